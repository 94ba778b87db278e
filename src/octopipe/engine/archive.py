"""Archive and unarchive runs: move ``runs/NAME`` to ``runs/_archive/NAME`` and back.

Rules:

* Only finished runs move: stored status ``complete``, ``failed`` or ``killed``, and no live
  runner. The run's lock is held during the move, so no runner can start on it half-way.
* The move is one ``os.rename`` inside the runs folder: atomic, never a copy. The destination
  name is claimed first with ``mkdir`` (which fails if anything is there) and the rename
  replaces that empty folder.
* An existing destination is never overwritten or nested into (Octobatch's ``shutil.move``
  turned a name collision into ``_archive/x/x``): the move is refused and neither folder is
  touched.
* A run folder given by path must sit directly in the runs folder (or its ``_archive``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from octopipe.core.states import RUN_TERMINAL
from octopipe.engine.paths import ARCHIVE_DIR, LEDGER_FILE, RunPaths
from octopipe.errors import RunLocked, RunNotFound, UsageError
from octopipe.store import open_run_store
from octopipe.store.lock import RunLock, holder_pid


def archive_run(runs_dir: Path, run: str) -> RunPaths:
    """Move a finished run into ``_archive``; returns its new place."""
    base = runs_dir.resolve()
    source = _locate(base, run, archived=False)
    return _move(source, base / ARCHIVE_DIR / source.name, "archive")


def unarchive_run(runs_dir: Path, run: str) -> RunPaths:
    """Move an archived run back into the runs folder; returns its new place."""
    base = runs_dir.resolve()
    source = _locate(base, run, archived=True)
    return _move(source, base / source.name, "unarchive")


def _locate(base: Path, run: str, *, archived: bool) -> Path:
    here = base / ARCHIVE_DIR if archived else base
    other = base if archived else base / ARCHIVE_DIR
    given = Path(run)
    if len(given.parts) > 1 or given.is_absolute() or run in (".", ".."):
        folder = given.resolve()
        if not (folder / LEDGER_FILE).is_file():
            raise RunNotFound(run, str(base))
        if folder.parent == other:
            state = "already archived" if not archived else "not archived"
            raise UsageError(f"run {folder.name!r} is {state}")
        if folder.parent != here:
            raise UsageError(
                f"{folder} is not a run folder of {here}; only runs directly in the runs "
                f"folder (see --runs-dir) can be {'unarchived' if archived else 'archived'}"
            )
        return folder
    if run in ("", ARCHIVE_DIR) or run.startswith("."):
        raise UsageError(f"invalid run name {run!r}")
    folder = here / run
    if (folder / LEDGER_FILE).is_file() and not folder.is_symlink():
        return folder
    if (other / run / LEDGER_FILE).is_file():
        state = "already archived" if not archived else "not archived"
        raise UsageError(f"run {run!r} is {state}")
    raise RunNotFound(run, str(here))


def _move(source: Path, dest: Path, verb: str) -> RunPaths:
    if dest.exists() or dest.is_symlink():  # refuse before touching anything
        raise _collision(source, dest, verb)
    lock = RunLock(source)
    if not lock.try_acquire():
        pid = holder_pid(source)
        who = f" (process {pid})" if pid else ""
        raise RunLocked(f"run {source.name!r} is being driven by a live runner{who}; cannot {verb}")
    try:
        if verb == "archive":
            _check_finished(source)
        try:
            dest.parent.mkdir(exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot {verb} {source.name!r}: {dest.parent}: {exc}") from None
        try:
            # Claim the name first: mkdir fails if anything is there, so a folder appearing
            # between a check and the rename can never be replaced or nested into.
            os.mkdir(dest)
        except FileExistsError:
            raise _collision(source, dest, verb) from None
        try:
            os.rename(source, dest)  # replaces the empty folder just made, atomically
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.rmdir(dest)
            raise UsageError(f"cannot {verb} {source.name!r}: {exc.strerror}") from None
    finally:
        lock.release()
    return RunPaths(dest)


def _collision(source: Path, dest: Path, verb: str) -> UsageError:
    return UsageError(
        f"cannot {verb} {source.name!r}: {dest} already exists; nothing was moved "
        "(rename or remove one of them first)"
    )


def _check_finished(folder: Path) -> None:
    ledger = open_run_store(folder / LEDGER_FILE, readonly=True)
    try:
        status = ledger.run_info().status
    finally:
        ledger.close()
    if status not in RUN_TERMINAL:
        finished = ", ".join(sorted(s.value for s in RUN_TERMINAL))
        raise UsageError(
            f"run {folder.name!r} is {status.value}; only finished runs ({finished}) can be "
            "archived (kill it first to give it up)"
        )
