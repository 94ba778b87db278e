"""A hint between SQLite writers: "I am waiting to write; leave the ledger alone a moment".

A runner that runs local steps back to back holds SQLite's write lock almost without a break,
and SQLite's busy handler (which polls) can then make a second writer wait in vain: a CLI
queueing a command (the one write allowed without the run lock). So the second writer holds
a shared ``flock`` on ``<run>/.command.lock`` while it waits (:func:`writer_intent`, taken by
``Ledger.enqueue_command``), and the runner, between passes, asks :func:`writer_waiting`
(``Ledger.writer_waiting``) and yields while it is true. The kernel drops the flock when its
holder dies, so no stale hint remains. A hint only: failing to take or read it never fails
a write.

This is SQLite's workaround and lives behind the store protocol: a store whose writers do
not exclude each other answers ``writer_waiting() -> False``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

INTENT_NAME = ".command.lock"


@contextlib.contextmanager
def writer_intent(run_dir: Path) -> Iterator[None]:
    """Held while this process waits to write into the ledger of ``run_dir``."""
    path = Path(run_dir) / INTENT_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield  # a hint only: never fail a write over it
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def writer_waiting(run_dir: Path) -> bool:
    """True while some process holds :func:`writer_intent` on ``run_dir``."""
    try:
        fd = os.open(Path(run_dir) / INTENT_NAME, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
