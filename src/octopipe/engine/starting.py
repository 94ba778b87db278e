"""The window between ``run --detach`` starting a runner and that runner holding the run lock.

``run --detach`` writes ``runner.starting`` in the run folder (the child's pid and the time
just before it was started) as soon as the child exists; the runner removes the file once it
holds the lock and has read the command queue. Meanwhile a change (``engine.control``) sees a
*starting* runner instead of none: it queues the command rather than applying it under the
lock (where a pause of a pending run would be "nothing to pause", and a pause of a run about
to be resumed would be undone by the resume). The runner keeps the stops queued since that
time (``queued_for_me``) instead of rejecting them as meant for an earlier runner.

Guarantees: ``starting_pid`` is ``None`` when there is no file, the file is unreadable (it is
then ignored, not trusted), its process is gone, or it is older than ``STARTING_MAX_S``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from octopipe.store.codec import utc_now

MARKER = "runner.starting"
STARTING_MAX_S = 120.0
"""A runner that has not taken its lock this long after its start is not "starting"."""


@dataclass(frozen=True)
class Starting:
    pid: int
    since: str  # utc_now() format, comparable with the command queue's ``ts``


def marker_path(run_dir: Path) -> Path:
    return Path(run_dir) / MARKER


def started_at() -> str:
    """The time to record, read just before the child is started."""
    return utc_now()


def mark_starting(run_dir: Path, pid: int, since: str) -> None:
    """Record that runner ``pid`` (started at ``since``) is starting for the run."""
    target = marker_path(run_dir)
    tmp = target.with_name(f".{MARKER}.tmp")
    tmp.write_text(json.dumps({"pid": pid, "since": since}), encoding="utf-8")
    tmp.replace(target)


def read_starting(run_dir: Path) -> Starting | None:
    """The recorded starting runner, whether alive or not; ``None`` without a readable file."""
    path = marker_path(run_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Starting(int(data["pid"]), str(data["since"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a torn or foreign file: treated as no starting runner


def starting_pid(run_dir: Path) -> int | None:
    """The pid of a runner started for the run that is alive and has not yet taken the lock."""
    found = read_starting(run_dir)
    if found is None:
        return None
    try:
        age = time.time() - marker_path(run_dir).stat().st_mtime
    except FileNotFoundError:
        return None
    if age > STARTING_MAX_S or not _alive(found.pid):
        return None
    return found.pid


def queued_for_me(run_dir: Path, ts: str) -> bool:
    """Whether a command queued at ``ts`` was meant for this process, a runner started by
    ``run --detach`` at or before that time."""
    found = read_starting(run_dir)
    return found is not None and found.pid == os.getpid() and ts >= found.since


def clear_starting(run_dir: Path) -> None:
    """The runner holds the lock: it is no longer starting."""
    marker_path(run_dir).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
