"""Run-scope steps that octopipe carries out itself: the unit extraction of Octobatch's
``scripts/extract_units.py``.

One file per record valid at the last unit step, in ``output_dir`` (relative to the run
folder, default ``outputs/units``): the name is ``filename_expression`` (default
``data['unit_id']``) with ``/`` and ``\\`` turned into ``_``, plus ``.json`` (``.json.gz`` with
``compression: gzip``); the content is ``content_expression`` (default ``data``, the whole
record) as JSON indented by 2, as Octobatch writes it. Both expressions see ``data``, the
record, and run in the safe expression language within an expression budget per record.

Idempotent: the folder is built beside its place and swapped in, so re-running rewrites it
(never appends) and a reader never sees half of it. Contained: the folder must lie inside
the run folder, away from what octopipe keeps there (``core/scripts.output_problem``), and a
link on the way is refused, never followed. A record whose name or content cannot be made is
counted and named in the outcome; two records with one name keep the later one, and say so.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from octopipe.core.budget import Budget
from octopipe.core.config_models import RunStep
from octopipe.core.containment import Escape, real_root, resolve_inside
from octopipe.core.expressions import compile_expression
from octopipe.core.scripts import normalised, output_problem
from octopipe.engine.exports import valid_records
from octopipe.engine.octobatch_view import remove
from octopipe.engine.paths import RunPaths
from octopipe.errors import OctopipeError, PostProcessError
from octopipe.store import RunReader

DEFAULT_OUTPUT_DIR = "outputs/units"
DEFAULT_FILENAME = "data['unit_id']"
DEFAULT_CONTENT = "data"
MAX_NAME = 200
PROBLEMS_SHOWN = 5


@dataclass
class ExtractSummary:
    output_dir: str
    extracted: int = 0
    errors: list[str] = field(default_factory=list)
    duplicates: int = 0

    def describe(self) -> str:
        text = f"extracted {self.extracted} file(s) into {self.output_dir}"
        if self.duplicates:
            text += f"; {self.duplicates} record(s) shared a file name with an earlier one"
        if self.errors:
            shown = "; ".join(self.errors[:PROBLEMS_SHOWN])
            more = len(self.errors) - PROBLEMS_SHOWN
            text += f"; {len(self.errors)} record(s) failed: {shown}"
            text += f" and {more} more" if more > 0 else ""
        return text


def output_folder(paths: RunPaths, written: str | None) -> tuple[str, Path]:
    """The extraction folder, checked: (as shown, absolute path)."""
    shown = normalised(written if written is not None else DEFAULT_OUTPUT_DIR)
    problem = output_problem(shown, folder=True)
    if problem:
        raise PostProcessError(f"output_dir {shown!r} {problem}")
    root = real_root(paths.root)
    target = root / shown
    walked = root
    for part in Path(shown).parts[:-1]:
        walked = walked / part
        if walked.is_symlink():
            raise PostProcessError(f"output_dir {shown!r}: {walked} is a link; it is not followed")
    try:
        resolve_inside(root, target.parent, shown)
    except Escape as exc:
        raise PostProcessError(f"output_dir {shown!r}: {exc.reason}") from None
    return shown, target


def extract_units(ledger: RunReader, paths: RunPaths, step: RunStep) -> ExtractSummary:
    """Write one file per valid record of the last unit step (see the module notes)."""
    shown, target = output_folder(paths, step.output_dir)
    name_expr = compile_expression(step.filename_expression or DEFAULT_FILENAME)
    content_expr = compile_expression(step.content_expression or DEFAULT_CONTENT)
    gz = step.compression == "gzip"
    summary = ExtractSummary(shown)
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        seen: set[str] = set()
        for record in valid_records(ledger, len(ledger.steps) - 1):
            unit = str(record.get("unit_id"))
            try:
                name = _file_name(name_expr.evaluate({"data": record}, Budget()))
                content = content_expr.evaluate({"data": record}, Budget())
                body = json.dumps(content, indent=2).encode("utf-8")
            except (OctopipeError, TypeError, ValueError) as exc:
                detail = exc.message if isinstance(exc, OctopipeError) else str(exc)
                summary.errors.append(f"{unit}: {detail}")
                continue
            file_name = f"{name}.json.gz" if gz else f"{name}.json"
            if file_name in seen:
                summary.duplicates += 1
            seen.add(file_name)
            (building / file_name).write_bytes(_gzip(body) if gz else body)
            summary.extracted += 1
        remove(target)
        building.rename(target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return summary


def _file_name(value: object) -> str:
    if value is None or value == "":
        raise ValueError("the file name expression gave an empty name")
    name = str(value).replace("/", "_").replace("\\", "_")
    if "\x00" in name or len(name) > MAX_NAME:
        raise ValueError(f"unusable file name {name[:40]!r} (NUL, or over {MAX_NAME} characters)")
    return name


def _gzip(body: bytes) -> bytes:
    """A gzip stream without a timestamp or a name: the same record gives the same bytes."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush()


__all__ = ["ExtractSummary", "extract_units", "output_folder"]
