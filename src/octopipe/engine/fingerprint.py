"""A run's snapshot must stay the one its ledger was made from.

``init`` copies the pipeline into ``runs/NAME/config/`` and the ledger records a fingerprint of
that copy: a SHA-256 digest of every file, by path (``fingerprint``). Whenever a process is
about to drive the run (``run``/``resume``/``watch``, ``revalidate`` with the snapshot), the
snapshot is fingerprinted again and compared:

* a file changed, added or removed: refused with ``SnapshotChanged`` (exit 2) naming each
  file, unless the user accepts the edit knowingly (``octopipe run NAME
  --accept-edited-snapshot``), which records the new fingerprint and logs the files;
* whatever the fingerprint says, the snapshot's per-unit steps must be the ledger's steps, in
  the same order and with the same scopes: the ledger stores results by step position, so a
  reordered or renamed step would store each step's fields under another. That is refused
  even with an accepted edit;
* a run made before fingerprints existed has none: the first driver records it.

``__pycache__`` folders are left out (Python may write them beside an imported file). A
symbolic link is fingerprinted by its target's name, never followed.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from octopipe.core.config import Pipeline, load_pipeline
from octopipe.core.config_models import ExpressionStep, FanOutStep, LLMStep
from octopipe.engine.paths import RunPaths
from octopipe.errors import SnapshotChanged, StoreError
from octopipe.store import RunReader, RunStore, open_run_store
from octopipe.store.records import StepDef

IGNORED_DIRS = frozenset({"__pycache__"})
ACCEPT_FLAG = "--accept-edited-snapshot"


def fingerprint(folder: Path) -> dict[str, str]:
    """``relative path -> "sha256:<hex>"`` for every file under ``folder`` (links by target:
    ``"symlink:<hex>"``; sockets, pipes and devices by kind, never opened)."""
    files: dict[str, str] = {}
    try:
        for dirpath, dirnames, filenames in os.walk(folder, onerror=_raise):
            here = Path(dirpath)
            for name in list(dirnames):
                if name in IGNORED_DIRS:
                    dirnames.remove(name)
                elif (here / name).is_symlink():  # os.walk lists it but does not enter it
                    dirnames.remove(name)
                    filenames.append(name)
            for name in filenames:
                path = here / name
                files[path.relative_to(folder).as_posix()] = _digest(path)
    except OSError as exc:
        raise StoreError(f"the run's snapshot {folder} cannot be read: {exc}") from None
    return dict(sorted(files.items()))


def _raise(exc: OSError) -> None:
    raise exc


def _digest(path: Path) -> str:
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        return "symlink:" + hashlib.sha256(os.readlink(path).encode()).hexdigest()
    if not stat.S_ISREG(mode):
        return f"special:{stat.S_IFMT(mode):o}"
    with path.open("rb") as handle:
        return "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()


def differences(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """``["config.yaml (changed)", "notes.txt (added)", ...]`` in path order."""
    out = []
    for name in sorted(set(recorded) | set(current)):
        if name not in current:
            out.append(f"{name} (removed)")
        elif name not in recorded:
            out.append(f"{name} (added)")
        elif recorded[name] != current[name]:
            out.append(f"{name} (changed)")
    return out


def record_fingerprint(ledger: RunStore, paths: RunPaths) -> None:
    """At init: the snapshot as the ledger was made from it."""
    ledger.record_snapshot_fingerprint(
        fingerprint(paths.config_dir), "fingerprinted the run's snapshot (config/)"
    )


def check_snapshot(ledger: RunReader, paths: RunPaths) -> None:
    """Refuse a snapshot that differs from its recorded fingerprint (read-only: for checks
    made before the run's lock is taken, and by ``revalidate``)."""
    recorded = ledger.snapshot_fingerprint()
    if recorded is None:
        return
    changes = differences(recorded, fingerprint(paths.config_dir))
    if changes:
        raise SnapshotChanged(_changed_message(paths, changes), changes)


def verify_snapshot(paths: RunPaths) -> None:
    """:func:`check_snapshot` on a run by its folder (opens the ledger read-only)."""
    ledger = open_run_store(paths.ledger, readonly=True)
    try:
        check_snapshot(ledger, paths)
    finally:
        ledger.close()


def open_snapshot(ledger: RunStore, paths: RunPaths, *, accept: bool = False) -> Pipeline:
    """The run's pipeline, for the process that drives it (it holds the lock; the ledger is
    open read-write). ``accept`` takes an edited snapshot knowingly: its new fingerprint is
    recorded, with the files named in the event log."""
    recorded = ledger.snapshot_fingerprint()
    current = fingerprint(paths.config_dir)
    changes = [] if recorded is None else differences(recorded, current)
    if changes and not accept:
        raise SnapshotChanged(_changed_message(paths, changes), changes)
    pipeline = load_pipeline(paths.config_dir)
    check_steps(pipeline, ledger, paths)
    if recorded is None:
        ledger.record_snapshot_fingerprint(
            current, "fingerprinted the run's snapshot (the run was made without one)"
        )
    elif changes:
        ledger.record_snapshot_fingerprint(
            current, "accepted an edited snapshot: " + ", ".join(changes)
        )
    return pipeline


SCOPES = {LLMStep: "chunk", ExpressionStep: "expression", FanOutStep: "fan_out"}


def step_defs(pipeline: Pipeline) -> list[StepDef]:
    """The per-unit steps a ledger is made with (``create``) and checked against."""
    return [StepDef(s.name, SCOPES[type(s)]) for s in pipeline.unit_steps]  # type: ignore[arg-type]


def check_steps(pipeline: Pipeline, ledger: RunReader, paths: RunPaths) -> None:
    """The snapshot's per-unit steps must be the ledger's, in order, with the same scopes."""
    found = [(s.name, s.scope) for s in step_defs(pipeline)]
    stored = [(s.name, s.scope) for s in ledger.steps]
    if found == stored:
        return
    raise SnapshotChanged(
        f"run {paths.name!r}: the steps of its snapshot ({_steps(found)}) are not the steps "
        f"its ledger was made with ({_steps(stored)}); the ledger keeps results by step, so each "
        f"step's fields would be stored under another. Restore {paths.config_dir / 'config.yaml'}"
        " or start a new run from the pipeline folder",
        ["config.yaml (steps)"],
    )


def _steps(steps: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{name} ({scope})" for name, scope in steps) or "none"


def _changed_message(paths: RunPaths, changes: list[str]) -> str:
    return (
        f"run {paths.name!r}: its snapshot ({paths.config_dir}) no longer matches the "
        f"fingerprint taken when the run was created: {', '.join(changes)}. A run reads only "
        "its snapshot, and the ledger holds results made with the old one. Undo the edit, or "
        "start a new run from the pipeline folder; to go on with the edited snapshot "
        f"knowingly: `octopipe run {paths.name} {ACCEPT_FLAG}`"
    )
