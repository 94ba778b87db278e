"""Exports of validated results and failures into ``outputs/``; the ledger stays the truth.

Files are written to a temporary name, flushed, fsynced and renamed, so a reader (or a crash)
never sees half a file; exporting twice from the same ledger gives the same bytes, because
records come out of the ledger in unit order and are serialised the same way each time (gzip
members carry no timestamp or file name).

Formats: JSONL (one object per line), CSV (columns are the union of every record's keys, in
order of first appearance, so a field only some records have is never dropped; nested values
are JSON text), Parquet (needs the optional ``pyarrow``; a column keeps its type when every
value has one scalar type, otherwise it holds JSON text). ``compress`` gzips JSONL and CSV;
Parquet files are compressed internally and refuse it.

CSV is opened by spreadsheets, which run a cell that starts with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return as a formula (CSV injection): such text cells, headers included,
are written with a leading ``'`` (OWASP's advice), so they show as text. Numbers stay numbers;
JSONL and Parquet are written as they are.

Exports follow the ledger. Every export is recorded in the run's ``.exports.json`` with the
ledger's results version it was read at (``RunReader.results_version``, counted up by every
change of a verdict); :func:`refresh_exports` rewrites each recorded export whose version is
behind, and :func:`export_run` writes the default set and refreshes the rest. A file that
cannot be written (read-only folder, full disk) raises ``CannotWrite`` naming it.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import importlib
import io
import json
import os
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO, Literal

from octopipe.core.fields import visible
from octopipe.engine.paths import RunPaths
from octopipe.engine.queries import step_index
from octopipe.engine.record_lines import line, record_line
from octopipe.errors import CannotWrite, UsageError
from octopipe.store import RunReader, open_run_store
from octopipe.store.records import FailureRow

Format = Literal["jsonl", "csv", "parquet"]
FORMATS: tuple[Format, ...] = ("jsonl", "csv", "parquet")
Records = Callable[[], Iterator[dict[str, Any]]]  # a fresh pass over the records each call

PARQUET_ROWS = 10_000  # rows per Parquet row group (memory bound while writing)
_GZIP_LEVEL = 6
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class ExportFile:
    """One written export: where, what, how many records."""

    path: Path
    step: str
    kind: str  # "validated" or "failures"
    fmt: Format
    compressed: bool
    records: int


STALE_AFTER_S = 600


def _remove_stale_temps(path: Path) -> None:
    """Temp files of this export left by a killed writer (never a recent one)."""
    now = time.time()
    for temp in path.parent.glob(f".{path.name}.*"):
        with contextlib.suppress(OSError):
            if now - temp.stat().st_mtime > STALE_AFTER_S:
                temp.unlink()


def atomic_write(path: Path, chunks: Iterable[bytes]) -> Path:
    """Write ``chunks`` to ``path`` atomically (temp file, fsync, rename)."""

    def fill(out: BinaryIO) -> None:
        for chunk in chunks:
            out.write(chunk)

    return _atomic(path, fill)


def _atomic(path: Path, fill: Callable[[BinaryIO], None]) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise CannotWrite.from_os_error(exc, path, "export") from None
    try:
        with os.fdopen(fd, "wb") as out:
            fill(out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise CannotWrite.from_os_error(exc, path, "export") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# --- records ----------------------------------------------------------------------------------


def valid_records(ledger: RunReader, step_idx: int) -> Iterator[dict[str, Any]]:
    for unit_id, record in ledger.iter_valid(step_idx):
        yield {"unit_id": unit_id, **visible(record)}


@contextlib.contextmanager
def final_step_records(paths: RunPaths) -> Iterator[Iterator[dict[str, Any]]]:
    """The records valid at the run's last unit step (``unit_id`` and every field), streamed
    from the store opened read-only: what the built-in analysis reads."""
    ledger = open_run_store(paths.ledger, readonly=True)
    try:
        yield valid_records(ledger, len(ledger.steps) - 1)
    finally:
        ledger.close()


def failure_records(ledger: RunReader, step_idx: int) -> Iterator[dict[str, Any]]:
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


# --- encoders ---------------------------------------------------------------------------------


class _Count:
    def __init__(self) -> None:
        self.n = 0

    def each(self, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for record in records:
            self.n += 1
            yield record


def _gzip(body: Iterable[bytes]) -> Iterator[bytes]:
    """A gzip stream without timestamp or name (``wbits=31``): same input, same bytes."""
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)
    for chunk in body:
        if out := compressor.compress(chunk):
            yield out
    yield compressor.flush()


def _jsonl(lines: Iterator[str]) -> Iterator[bytes]:
    buffer: list[str] = []
    for text in lines:
        buffer.append(text)
        if len(buffer) >= 1_000:
            yield "".join(buffer).encode()
            buffer.clear()
    if buffer:
        yield "".join(buffer).encode()


def _lines(records: Records, count: _Count) -> Iterator[str]:
    return (line(record) for record in count.each(records()))


def _valid_lines(ledger: RunReader, step_idx: int, count: _Count) -> Iterator[str]:
    """The lines of `valid_records`, joined from the stored texts where that gives the same
    bytes (``record_lines.joined_line``): no decoded record is encoded again."""
    for unit_id, parts in ledger.iter_valid_parts(step_idx):
        count.n += 1
        yield record_line(unit_id, parts)


def _columns(records: Records) -> list[str]:
    seen: dict[str, None] = {}
    for record in records():
        for key in record:
            if key not in seen:
                seen[key] = None
    return list(seen)


def _known(record: dict[str, Any], columns: dict[str, Any]) -> dict[str, Any]:
    """Two-pass formats read the records twice; on a live run new ones may appear between
    the passes, with keys the first pass did not see. Refuse rather than drop a field."""
    for key in record:
        if key not in columns:
            raise UsageError(
                f"the run changed while it was being exported (new field {key!r}); export "
                "again, or pause the run first"
            )
    return record


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """A CSV text cell a spreadsheet would run as a formula, made inert with a leading ``'``."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, int | float | bool):
        return value
    if isinstance(value, str):
        return neutralise(value)
    return neutralise(json.dumps(value, ensure_ascii=False, default=str))


def _csv(records: Records, count: _Count) -> Iterator[bytes]:
    columns = _columns(records)  # first pass: every key of every record
    if not columns:
        return
    buffer = io.StringIO()
    known = dict.fromkeys(columns)
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([neutralise(c) for c in columns])
    for record in count.each(records()):
        row = _known(record, known)
        writer.writerow([_cell(row[c]) if c in row else "" for c in columns])
        if buffer.tell() >= 1 << 16:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def _pyarrow() -> tuple[ModuleType, ModuleType]:
    try:
        return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise UsageError(
            "parquet export needs pyarrow, which is not installed: "
            "pip install 'octopipe[parquet]' (or export --format jsonl/csv)"
        ) from None


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if _INT64[0] <= value <= _INT64[1] else "json"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "json"


def _column_types(records: Records) -> dict[str, str]:
    kinds: dict[str, set[str]] = {}
    for record in records():
        for key, value in record.items():
            kinds.setdefault(key, set()).add(_kind_of(value))
    types = {}
    for key, found in kinds.items():
        found.discard("null")
        if found == {"int", "float"}:
            found = {"float"}
        types[key] = found.pop() if len(found) == 1 else ("str" if not found else "json")
    return types


def _parquet(records: Records, count: _Count, out: BinaryIO) -> None:
    pa, pq = _pyarrow()
    types = _column_types(records) or {"unit_id": "str"}
    arrow = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "str": pa.string()}
    schema = pa.schema([(k, arrow.get(t, pa.string())) for k, t in types.items()])

    def convert(key: str, value: Any) -> Any:
        if value is None:
            return None
        kind, found = types[key], _kind_of(value)
        if kind == "json":
            return json.dumps(value, ensure_ascii=False, default=str)
        if kind == "float" and found in ("int", "float"):
            return float(value)
        if found != kind:
            raise UsageError(
                f"the run changed while it was being exported (field {key!r}); export "
                "again, or pause the run first"
            )
        return value

    writer = pq.ParquetWriter(out, schema, compression="snappy")
    try:
        rows: list[dict[str, Any]] = []
        for record in count.each(records()):
            rows.append(_known(record, types))
            if len(rows) >= PARQUET_ROWS:
                writer.write_table(_table(pa, schema, rows, convert))
                rows = []
        if rows or not count.n:
            writer.write_table(_table(pa, schema, rows, convert))
    finally:
        writer.close()


def _table(pa: Any, schema: Any, rows: list[dict[str, Any]], convert: Any) -> Any:
    columns = {name: [convert(name, row.get(name)) for row in rows] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)


# --- the exports ------------------------------------------------------------------------------


def export_path(
    paths: RunPaths,
    step: str,
    *,
    fmt: Format = "jsonl",
    compress: bool = False,
    failures: bool = False,
) -> Path:
    kind = "failures" if failures else "validated"
    return paths.outputs / (f"{step}_{kind}.{fmt}" + (".gz" if compress else ""))


def write_export(
    ledger: RunReader,
    paths: RunPaths,
    step_idx: int,
    *,
    fmt: Format = "jsonl",
    compress: bool = False,
    failures: bool = False,
) -> ExportFile:
    """Export one step's validated records (or its failures) into ``outputs/``, and record it
    (with the results version it was read at) so that it is refreshed when the ledger moves."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; one of: {', '.join(FORMATS)}")
    if fmt == "parquet":
        if compress:
            raise UsageError("parquet files are compressed internally; --gzip is for jsonl/csv")
        _pyarrow()  # refuse before reading anything when pyarrow is missing
    name = ledger.steps[step_idx].name
    path = export_path(paths, name, fmt=fmt, compress=compress, failures=failures)
    version = ledger.results_version()  # before the records: a later change makes it stale

    def records() -> Iterator[dict[str, Any]]:
        if failures:
            return failure_records(ledger, step_idx)
        return valid_records(ledger, step_idx)

    count = _Count()
    if fmt == "parquet":
        _atomic(path, lambda out: _parquet(records, count, out))
    else:
        if fmt == "csv":
            body = _csv(records, count)
        elif failures:
            body = _jsonl(_lines(records, count))
        else:
            body = _jsonl(_valid_lines(ledger, step_idx, count))
        atomic_write(path, _gzip(body) if compress else body)
    kind = "failures" if failures else "validated"
    written = ExportFile(path, name, kind, fmt, compress, count.n)
    _record(paths, written, version)
    return written


def export_step(
    ledger: RunReader,
    paths: RunPaths,
    step_idx: int,
    *,
    fmt: Format = "jsonl",
    compress: bool = False,
    failures: bool = False,
) -> Path:
    return write_export(ledger, paths, step_idx, fmt=fmt, compress=compress, failures=failures).path


def export_run_steps(
    paths: RunPaths,
    step_name: str | None = None,
    *,
    fmt: Format = "jsonl",
    compress: bool = False,
    failures: bool = False,
) -> list[ExportFile]:
    """``octopipe export``: one step by name, or by default the last step's results (every
    step's failures with ``failures``), read from the store opened read-only."""
    ledger = open_run_store(paths.ledger, readonly=True)
    try:
        if step_name is not None:
            indexes = [step_index(ledger, step_name)]
        elif failures:
            indexes = list(range(len(ledger.steps)))
        else:
            indexes = [len(ledger.steps) - 1]
        return [
            write_export(ledger, paths, k, fmt=fmt, compress=compress, failures=failures)
            for k in indexes
        ]
    finally:
        ledger.close()


def default_export_names(ledger: RunReader) -> list[str]:
    last = ledger.steps[-1].name
    return [f"{last}_validated.jsonl"] + [f"{s.name}_failures.jsonl" for s in ledger.steps]


def exports_present(ledger: RunReader, paths: RunPaths) -> bool:
    """Whether every default export of the run exists (they are written atomically), plain
    or compressed by a ``gzip`` post-processing step."""
    return all(
        (paths.outputs / name).is_file() or (paths.outputs / f"{name}.gz").is_file()
        for name in default_export_names(ledger)
    )


def exports_current(ledger: RunReader, paths: RunPaths) -> bool:
    """Whether every default export exists (plain or gzipped) and every recorded export was
    written at the ledger's current results version (a run made before versions were
    recorded: no)."""
    manifest = read_manifest(paths)
    return all(
        name in manifest or f"{name}.gz" in manifest for name in default_export_names(ledger)
    ) and not stale_exports(ledger, paths, manifest)


def note_compressed(paths: RunPaths, name: str, *, keep_original: bool) -> bool:
    """Record that the export ``outputs/<name>`` was gzipped in place (a ``gzip``
    post-processing step) into ``<name>.gz``: from now on that is the export refreshed when
    the ledger moves, and the plain one too only when it was kept. False when ``name`` is
    not a recorded export (nothing to record)."""
    entries = read_manifest(paths)
    entry = entries.get(name)
    if entry is None or entry.compressed:
        return False
    gz = ExportFile(paths.outputs / f"{name}.gz", entry.step, entry.kind, entry.fmt, True, 0)
    _record(paths, gz, entry.results_version, drop=None if keep_original else name)
    return True


def export_run(ledger: RunReader, paths: RunPaths) -> list[Path]:
    """The default exports at the end of a run (the last step's results and every failure),
    then every other recorded export that the ledger has moved past."""
    last = len(ledger.steps) - 1
    written = [export_step(ledger, paths, last)]
    for index in range(len(ledger.steps)):
        written.append(export_step(ledger, paths, index, failures=True))
    return written + [f.path for f in refresh_exports(ledger, paths)]


def refresh_exports(ledger: RunReader, paths: RunPaths) -> list[ExportFile]:
    """Rewrite every recorded export the ledger has moved past (or that was deleted); exports
    never written are not created. Returns what was rewritten."""
    names = [s.name for s in ledger.steps]
    done = []
    for entry in stale_exports(ledger, paths):
        if entry.step not in names:
            continue  # not a step of this run (a hand-edited manifest): leave it
        done.append(
            write_export(
                ledger,
                paths,
                names.index(entry.step),
                fmt=entry.fmt,
                compress=entry.compressed,
                failures=entry.kind == "failures",
            )
        )
    return done


# --- the manifest: which export was written from which version of the results ----------------


@dataclass(frozen=True)
class ManifestEntry:
    name: str
    step: str
    kind: str
    fmt: Format
    compressed: bool
    results_version: int


def read_manifest(paths: RunPaths) -> dict[str, ManifestEntry]:
    """The recorded exports; an unreadable manifest counts as empty (everything is then
    stale, so the next export rewrites it rather than trusting it)."""
    try:
        data = json.loads(paths.exports_manifest.read_text(encoding="utf-8"))
        files = data["files"]
        return {
            name: ManifestEntry(
                name,
                str(e["step"]),
                "failures" if e["kind"] == "failures" else "validated",
                e["format"] if e["format"] in FORMATS else "jsonl",
                bool(e["gzip"]),
                int(e["results_version"]),
            )
            for name, e in files.items()
        }
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def stale_exports(
    ledger: RunReader, paths: RunPaths, manifest: dict[str, ManifestEntry] | None = None
) -> list[ManifestEntry]:
    """Recorded exports written before the ledger's last change of results, or gone."""
    current = ledger.results_version()
    entries = read_manifest(paths) if manifest is None else manifest
    return [
        e
        for name, e in sorted(entries.items())
        if e.results_version != current or not (paths.outputs / name).is_file()
    ]


def _record(paths: RunPaths, written: ExportFile, version: int, *, drop: str | None = None) -> None:
    """Add ``written`` to the manifest (read-modify-write under a lock: a CLI export and a
    runner's end-of-run export may meet); ``drop`` removes another entry in the same write."""
    lock_path = paths.root / ".exports.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise CannotWrite.from_os_error(exc, lock_path, "export manifest") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        entries = read_manifest(paths)
        if drop is not None:
            entries.pop(drop, None)
        entries[written.path.name] = ManifestEntry(
            written.path.name,
            written.step,
            written.kind,
            written.fmt,
            written.compressed,
            version,
        )
        files = {
            name: {
                "step": e.step,
                "kind": e.kind,
                "format": e.fmt,
                "gzip": e.compressed,
                "results_version": e.results_version,
            }
            for name, e in sorted(entries.items())
        }
        text = json.dumps({"files": files}, indent=2, sort_keys=True) + "\n"
        try:
            atomic_write(paths.exports_manifest, [text.encode()])
        except CannotWrite as exc:
            raise CannotWrite(exc.path, exc.reason, "export manifest") from None
    finally:
        os.close(fd)
