"""Exports of validated results and failures into ``outputs/``; the ledger stays the truth.

Files are written to a temporary name, flushed, fsynced and renamed, so a reader (or a crash)
never sees half a file; exporting twice from the same ledger gives the same bytes, because
records come out of the ledger in unit order and are serialised the same way each time.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from octopipe.core.steps import visible
from octopipe.engine.paths import RunPaths
from octopipe.errors import UsageError
from octopipe.store.ledger import Ledger
from octopipe.store.records import FailureRow

Format = Literal["jsonl", "csv", "parquet"]


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, default=str, separators=(",", ":")) + "\n"


def atomic_write(path: Path, chunks: Iterable[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def valid_records(ledger: Ledger, step_idx: int) -> Iterator[dict[str, Any]]:
    for unit_id, record in ledger.iter_valid(step_idx):
        yield {"unit_id": unit_id, **visible(record)}


def failure_records(ledger: Ledger, step_idx: int) -> Iterator[dict[str, Any]]:
    step = ledger.steps[step_idx].name
    for row in ledger.iter_failures(step_idx):
        yield {"unit_id": row.unit_id, "step": step, **_failure_fields(row)}


def _failure_fields(row: FailureRow) -> dict[str, Any]:
    return {
        "state": row.state.value,
        "stage": row.stage,
        "attempts": row.attempts,
        "errors": row.errors,
        "raw_response": row.raw_response,
        "input": visible(row.input) if isinstance(row.input, dict) else row.input,
    }


def _encode(records: Iterable[dict[str, Any]], fmt: Format, compress: bool) -> Iterator[bytes]:
    if fmt == "jsonl":
        body: Iterator[bytes] = (_line(r).encode() for r in records)
    elif fmt == "csv":
        body = _csv(records)
    else:
        raise UsageError("parquet export needs pyarrow: pip install 'octopipe[parquet]'")
    if not compress:
        yield from body
        return
    buffer = io.BytesIO()
    # mtime=0: the same records give the same bytes, whenever they are exported.
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped:
        for chunk in body:
            zipped.write(chunk)
    yield buffer.getvalue()


def _csv(records: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    writer: csv.DictWriter[str] | None = None
    for record in records:
        buffer = io.StringIO()
        flat = {
            k: v
            if isinstance(v, str | int | float | bool) or v is None
            else json.dumps(v, ensure_ascii=False)
            for k, v in record.items()
        }
        if writer is None:
            writer = csv.DictWriter(buffer, fieldnames=list(flat), extrasaction="ignore")
            writer.writeheader()
        writer.writerow(flat)
        writer = csv.DictWriter(buffer, fieldnames=writer.fieldnames, extrasaction="ignore")
        yield buffer.getvalue().encode()


def export_step(
    ledger: Ledger,
    paths: RunPaths,
    step_idx: int,
    *,
    fmt: Format = "jsonl",
    compress: bool = False,
    failures: bool = False,
) -> Path:
    name = ledger.steps[step_idx].name
    kind = "failures" if failures else "validated"
    path = paths.outputs / (f"{name}_{kind}.{fmt}" + (".gz" if compress else ""))
    records = failure_records(ledger, step_idx) if failures else valid_records(ledger, step_idx)
    return atomic_write(path, _encode(records, fmt, compress))


def export_run(ledger: Ledger, paths: RunPaths) -> list[Path]:
    """The default exports at the end of a run: the last step's results and every failure."""
    last = len(ledger.steps) - 1
    written = [export_step(ledger, paths, last)]
    for index in range(len(ledger.steps)):
        written.append(export_step(ledger, paths, index, failures=True))
    return written
