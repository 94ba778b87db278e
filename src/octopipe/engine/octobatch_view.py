"""The Octobatch-compatible view of a run, for scripts written for Octobatch.

Octobatch keeps a run's results in files per chunk, and its users' scripts read them (NPCDialog's
``post_process.py`` counts the lines of ``chunks/*/*_failures.jsonl``). Before such a script
runs, :func:`write_view` lays the same files out from the ledger:

``RUN/chunks/chunk_NNN/``
    ``units.jsonl``: the chunk's units as generated (``unit_id`` and the item fields);
    ``<step>_validated.jsonl``: one line per unit valid at the step, the record as the step
    left it (``unit_id``, every field accumulated so far and the step's output);
    ``<step>_failures.jsonl``: one line per attempt that failed at the step, as Octobatch's
    validators write them: ``unit_id``, ``failure_stage`` (``schema_validation`` for schema
    failures, ``validation`` for rules, ``pipeline_internal`` for the rest: parse, provider,
    render, expression), ``step``, ``input`` (the step's input record), ``errors``,
    ``retry_count`` (attempts before this one), ``raw_response`` when there was one, and the
    input's fields whose names do not start with ``_`` copied to the top level.
``RUN/MANIFEST.json``
    ``pipeline`` (the unit steps in order; the last is the final step), ``status``, ``chunks``
    (per chunk: ``state`` ``VALIDATED``, ``items``), ``metadata`` (pipeline name, provider,
    model, mode).

Units go to chunks in the order they were made, ``processing.chunk_size`` to a chunk (fan-out
children after the generated units). A unit retried twice before it passed has two lines in its
step's failures file and one in the validated file: together what Octobatch's chunk and retry
folders hold. Octobatch's ``retry_NNN`` folders are not made; everything is under ``chunk_NNN``.

The view is derived: rebuilt from the ledger each time (built beside, then swapped in, so a
reader never sees half of it), reproducible, and never read back by octopipe. Deleting or
compressing it (``type: gzip`` over ``chunks/*/*_validated.jsonl``) breaks nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from octopipe.core.fields import visible
from octopipe.engine.paths import RunPaths
from octopipe.errors import CannotWrite
from octopipe.store import RunReader
from octopipe.store.records import FailedAttempt

VIEW_DIR = "chunks"
MANIFEST = "MANIFEST.json"
FAILURE_STAGES = {"schema": "schema_validation", "rules": "validation"}


@dataclass(frozen=True)
class ViewSummary:
    chunks: int
    valid_lines: int
    failure_lines: int


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"


def failure_line(step: str, attempt: FailedAttempt) -> dict[str, Any]:
    """An attempt that failed, as an Octobatch failure record."""
    record = {"unit_id": attempt.unit_id, **visible(attempt.input)}
    line: dict[str, Any] = {
        "unit_id": attempt.unit_id,
        "failure_stage": FAILURE_STAGES.get(attempt.stage or "", "pipeline_internal"),
        "step": step,
        "input": record,
        "errors": attempt.errors,
        "retry_count": attempt.attempt_no - 1,
    }
    if attempt.raw_response is not None:
        line["raw_response"] = attempt.raw_response
    for key, value in record.items():
        if key not in line and not key.startswith("_"):
            line[key] = value
    return line


class _ChunkFiles:
    """Writes lines to ``chunk_NNN/<name>`` for units arriving in uid order (one open file)."""

    def __init__(self, root: Path, uids: Any, chunk_size: int, name: str) -> None:
        self.root, self.uids, self.size, self.name = root, uids, chunk_size, name
        self.current: int | None = None
        self.out: IO[str] | None = None
        self.lines = 0
        self.items: dict[int, int] = {}

    def chunk_of(self, uid: int) -> int:
        return bisect_left(self.uids, uid) // self.size

    def write(self, uid: int, record: dict[str, Any]) -> None:
        chunk = self.chunk_of(uid)
        if chunk != self.current:
            self.close()
            folder = self.root / f"chunk_{chunk:03d}"
            folder.mkdir(exist_ok=True)
            self.out = (folder / self.name).open("a", encoding="utf-8")
            self.current = chunk
        assert self.out is not None
        self.out.write(_line(record))
        self.lines += 1
        self.items[chunk] = self.items.get(chunk, 0) + 1

    def close(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None


def _fill(files: _ChunkFiles, rows: Iterable[tuple[int, dict[str, Any]]]) -> int:
    try:
        for uid, record in rows:
            files.write(uid, record)
    finally:
        files.close()
    return files.lines


def write_view(ledger: RunReader, paths: RunPaths, chunk_size: int) -> ViewSummary:
    """Rebuild ``RUN/chunks/`` and ``RUN/MANIFEST.json`` from the ledger (module notes)."""
    uids = ledger.unit_uids()
    try:
        building = Path(tempfile.mkdtemp(prefix=".chunks.", dir=paths.root))
    except OSError as exc:
        raise CannotWrite.from_os_error(exc, paths.root, "the Octobatch view in") from None
    try:
        units = _ChunkFiles(building, uids, chunk_size, "units.jsonl")
        _fill(units, ((uid, {"unit_id": uid_s, **f}) for uid, uid_s, f in ledger.iter_units()))
        valid = failed = 0
        for index, step in enumerate(ledger.steps):
            valid += _fill(
                _ChunkFiles(building, uids, chunk_size, f"{step.name}_validated.jsonl"),
                _valid_rows(ledger, index),
            )
            failed += _fill(
                _ChunkFiles(building, uids, chunk_size, f"{step.name}_failures.jsonl"),
                ((a.uid, failure_line(step.name, a)) for a in ledger.iter_failed_attempts(index)),
            )
        _touch_missing(building, len(units.items), [s.name for s in ledger.steps])
        _swap(building, paths.root / VIEW_DIR)
        _write_manifest(ledger, paths, units.items)
    except OSError as exc:
        raise CannotWrite.from_os_error(exc, paths.root / VIEW_DIR, "the Octobatch view") from None
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return ViewSummary(len(units.items), valid, failed)


def _touch_missing(root: Path, chunks: int, steps: list[str]) -> None:
    """Every chunk has every step's two files, empty when nothing is in them (as Octobatch's
    chunks do once a step has run)."""
    for chunk in range(chunks):
        folder = root / f"chunk_{chunk:03d}"
        folder.mkdir(exist_ok=True)
        for step in steps:
            for kind in ("validated", "failures"):
                (folder / f"{step}_{kind}.jsonl").touch()


def _valid_rows(ledger: RunReader, index: int) -> Iterator[tuple[int, dict[str, Any]]]:
    for uid, unit_id, record in ledger.iter_valid_with_uid(index):
        yield uid, {"unit_id": unit_id, **visible(record)}


def _swap(building: Path, target: Path) -> None:
    """Put the new view in place of the old one (a link planted there is removed, never
    followed)."""
    old = target.with_name(f".{target.name}.old")
    remove(old)
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        target.rename(old)
    building.rename(target)
    remove(old)


def remove(path: Path) -> None:
    """Remove a file, a link (not its target) or a folder tree, if present."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _write_manifest(ledger: RunReader, paths: RunPaths, items: dict[int, int]) -> None:
    info = ledger.run_info()
    manifest = {
        "generated_by": "octopipe: derived from ledger.db for Octobatch scripts; never read back",
        "pipeline": [step.name for step in ledger.steps],
        "status": info.status.value,
        "chunks": {f"chunk_{c:03d}": {"state": "VALIDATED", "items": n} for c, n in items.items()},
        "metadata": {
            "pipeline_name": info.pipeline_name,
            "display_name": info.display_name,
            "provider": info.provider,
            "model": info.model,
            "mode": info.mode,
        },
    }
    target = paths.root / MANIFEST
    if target.is_symlink():
        target.unlink()
    fd, temp = tempfile.mkstemp(prefix=f".{MANIFEST}.", dir=paths.root)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(manifest, out, indent=2)
        out.write("\n")
    with contextlib.suppress(OSError):
        os.chmod(temp, 0o644)
    os.replace(temp, target)


__all__ = ["ViewSummary", "failure_line", "write_view"]
