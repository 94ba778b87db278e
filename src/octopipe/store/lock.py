"""The run lock: which process may drive a run, and whether anyone is driving it.

The runner holds an exclusive ``flock`` on ``<run_dir>/.lock`` for its whole life. The kernel
releases the lock when the holder's last file descriptor for it closes, including when the
process dies by ``kill -9``, so *liveness is the lock*: there is no PID to compare against
process tables, and no stale-PID guessing. The holder's PID and start time are written into the
file for display only (``ps``, the TUI).

Notes:

* The file is never deleted: deleting it would let a second process lock a fresh inode while
  the first still holds the old one.
* The descriptor is not inherited by subprocesses (Python opens it non-inheritable), so a
  post-process script left running cannot keep a dead runner's run looking alive. A child made
  by a bare ``os.fork()`` does share it.
* ``flock`` is advisory and per open file description; on network file systems its semantics
  depend on the server. Keep runs on a local disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from octopipe.errors import RunLocked, StoreError

LOCK_NAME = ".lock"
PROBE_RETRIES = 5  # a held lock is refused after about PROBE_RETRIES * PROBE_PAUSE_S seconds
PROBE_PAUSE_S = 0.02


class RunLock:
    """An exclusive, non-blocking lock on a run directory."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; ``False`` within ~0.1 s if somebody does."""
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open run lock {self.path}: {exc.strerror}") from None
        if not _flock_with_retries(fd, self.path):
            os.close(fd)
            return False
        self._fd = fd
        with contextlib.suppress(OSError):  # display only: never fail the run over it
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return True

    def acquire(self) -> None:
        """Take the lock or raise ``RunLocked`` naming the holder."""
        if not self.try_acquire():
            pid = holder_pid(self.run_dir)
            who = f" (process {pid})" if pid else ""
            raise RunLocked(f"run {self.run_dir.name} is being driven by another process{who}")

    def release(self) -> None:
        """Give the lock up. The PID is cleared; the file stays (see the module notes)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _flock_with_retries(fd: int, path: Path) -> bool:
    """Exclusive lock, retried briefly: a reader's :func:`is_held` probe holds a shared lock
    for microseconds, and must not make a starting runner believe the run is taken."""
    for attempt in range(PROBE_RETRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < PROBE_RETRIES:
                time.sleep(PROBE_PAUSE_S)
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {path}: {exc.strerror}") from None
    return False


def is_held(run_dir: str | os.PathLike[str]) -> bool:
    """Whether some process holds the run's lock (probe with a shared lock, release at once).

    Only a reader's view: the answer may change the instant after it is given.
    """
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreError(f"cannot read run lock {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def holder_pid(run_dir: str | os.PathLike[str]) -> int | None:
    """The PID the holder wrote into the lock file, for display; ``None`` if not held."""
    path = Path(run_dir) / LOCK_NAME
    if not is_held(run_dir):
        return None
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
