"""Read a pipeline's items file: YAML, JSON, JSONL or CSV.

The items file is what units are made from (``processing.items.source``). Four formats, chosen
by the file's suffix:

- ``.yaml``/``.yml`` and ``.json``: one document, either a list of items or a mapping whose
  values are lists (``processing.items.key`` names the list for ``direct`` and ``permutation``;
  ``cross_product`` reads several lists by name). YAML timestamps stay the strings they were
  written as, so every item is JSON-compatible.
- ``.jsonl``: one JSON value per line; blank lines are skipped. Streamed: a million-line file
  is never held in memory by :func:`iter_items`.
- ``.csv``: a header row, then one item (a dict keyed by the header) per row. Streamed too.
  Header names are stripped of surrounding spaces. **Cell typing:** a cell spelled exactly like
  a JSON number becomes an ``int`` (``-12``) or a ``float`` (``0.5``, ``1e3``), and a cell
  spelled exactly ``true``/``false`` becomes a ``bool``; every other cell stays the string it
  was, including empty cells, ``null``, ``007`` (leading zeros: a code, not a number),
  ``+5``, `` 5`` and ``NaN``. Quoting is strict: a quote never closed (which would swallow
  every later row into one cell) or text after a closing quote is refused, naming the row's
  line. Rows whose cell count differs from the header are refused;
  rows that are blank or hold only empty cells (``,,,`` as spreadsheets export) are skipped.

Every problem is a :class:`~octopipe.errors.ConfigError` naming the items file, the line where
one is known, and the key path inside the file (``cards[3]``).

Pure: this module reads files and writes nothing.
"""

from __future__ import annotations

import csv
import difflib
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, cast

from octopipe.core.yamlpos import (
    GuardedLoader,
    format_path,
    load_yaml_node,
    load_yaml_with_positions,
)
from octopipe.errors import ConfigError

ItemsFormat = Literal["yaml", "json", "jsonl", "csv"]

_FORMATS: dict[str, ItemsFormat] = {
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
    ".jsonl": "jsonl",
    ".csv": "csv",
}
STREAMED_FORMATS: frozenset[ItemsFormat] = frozenset({"jsonl", "csv"})

_JSON_DECODER = json.JSONDecoder()


class _ItemsLoader(GuardedLoader):
    """The guarded YAML loader (see ``core/yamlpos.py``), keeping timestamps as strings."""


cast(Any, _ItemsLoader).add_constructor(
    "tag:yaml.org,2002:timestamp", _ItemsLoader.construct_yaml_str
)


# --- public API -------------------------------------------------------------------------------


def items_format(path: Path) -> ItemsFormat:
    """The format of ``path`` from its suffix; a ``ConfigError`` for any other suffix."""
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        supported = ", ".join(_FORMATS)
        raise _error(path, f"unsupported items file type {path.suffix!r}; use one of {supported}")
    return fmt


def load_items(path: Path, key: str | None = None) -> list[Any] | dict[str, Any]:
    """Load the whole items file.

    With ``key``, the file must hold a mapping and the list under ``key`` is returned. Without
    it, the top level is returned as it is (a list, or a mapping for ``cross_product``).
    JSONL and CSV files are lists and take no ``key``.
    """
    fmt = items_format(path)
    if fmt in STREAMED_FORMATS:
        _refuse_key(path, fmt, key)
        return list(iter_items(path))
    data = _load_document(path, fmt)
    if key is not None:
        return _list_under_key(path, fmt, data, key)
    if isinstance(data, list | dict):
        return data
    raise _error(
        path,
        f"the items file must hold a list or a mapping, not {describe_type(data)}",
        line=_line_of(path, fmt, ()),
    )


def load_item_list(path: Path, key: str | None = None) -> list[Any]:
    """Load the list of items that ``direct`` and ``permutation`` use."""
    data = load_items(path, key)
    if isinstance(data, list):
        return data
    lists = [k for k, v in data.items() if isinstance(v, list)]
    shown = ", ".join(repr(k) for k in list(data)[:10])
    raise _error(
        path,
        f"the items file holds a mapping (keys {shown}); set processing.items.key to the list "
        "of items to use",
        line=_line_of(path, items_format(path), ()),
        hint=lists[0] if lists else None,
    )


def iter_items(path: Path, key: str | None = None) -> Iterator[Any]:
    """Yield the items of the list at ``key`` (or of the file), streaming JSONL and CSV.

    Problems with the file as a whole (missing, unknown type, missing key) are raised by this
    call; problems with one line of a JSONL/CSV file are raised when the iteration reaches it.
    """
    return (item for _, item in iter_items_with_lines(path, key))


def iter_items_with_lines(path: Path, key: str | None = None) -> Iterator[tuple[int | None, Any]]:
    """Like :func:`iter_items`, with the 1-based line each item starts on.

    Lines are known for JSONL and CSV; for YAML and JSON the line is ``None`` (see
    :func:`item_line`, which finds it on demand for error messages).
    """
    fmt = items_format(path)
    if fmt in STREAMED_FORMATS:
        _refuse_key(path, fmt, key)
        _require_file(path)
        return _stream_jsonl(path) if fmt == "jsonl" else _stream_csv(path)
    return ((None, item) for item in load_item_list(path, key))


def count_items(path: Path, key: str | None = None) -> int:
    """Number of items :func:`iter_items` yields, without parsing JSONL lines.

    JSONL: non-blank lines are counted (a malformed line still counts; iterating reports it).
    CSV: rows are split but cells are not typed. YAML/JSON: the document is loaded.
    """
    fmt = items_format(path)
    if fmt == "jsonl":
        _refuse_key(path, fmt, key)
        _require_file(path)
        count = 0
        try:
            with path.open("rb") as handle:
                for raw in handle:
                    if not raw.isspace():
                        count += 1
        except OSError as exc:
            raise _error(path, f"cannot read items file: {exc.strerror or exc}") from exc
        if count == 0:
            raise _error(path, "the items file is empty")
        return count
    if fmt == "csv":
        _refuse_key(path, fmt, key)
        _require_file(path)
        rows = sum(1 for _ in _csv_rows(path, typed=False))
        if rows == 0:
            raise _error(path, _CSV_NO_ROWS, line=1)
        return rows
    return len(load_item_list(path, key))


def item_line(path: Path, key: str | None, index: int) -> int | None:
    """Line where item ``index`` of a YAML/JSON items file starts, or ``None`` if unknown."""
    fmt = items_format(path)
    if fmt in STREAMED_FORMATS:
        return None
    return _line_of(path, fmt, (index,) if key is None else (key, index))


def key_line(path: Path, key_path: tuple[str | int, ...]) -> int | None:
    """Line of ``key_path`` (or of its closest parent) in a YAML/JSON items file."""
    fmt = items_format(path)
    return None if fmt in STREAMED_FORMATS else _line_of(path, fmt, key_path)


def closest(word: str, candidates: list[str]) -> str | None:
    """The candidate closest to ``word`` (difflib), for "did you mean" hints."""
    found = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return found[0] if found else None


# --- YAML and JSON ----------------------------------------------------------------------------


def _load_document(path: Path, fmt: ItemsFormat) -> Any:
    text = _read_text(path)
    if not text.strip():
        raise _error(path, "the items file is empty")
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise _error(path, f"invalid JSON: {exc.msg}", line=exc.lineno) from exc
        except RecursionError:
            raise _error(path, "invalid JSON: the document is nested too deeply") from None
    data, _ = load_yaml_node(text, str(path), _ItemsLoader)
    if data is None:
        raise _error(path, "the items file is empty")
    return data


def _list_under_key(path: Path, fmt: ItemsFormat, data: Any, key: str) -> list[Any]:
    if not isinstance(data, dict):
        raise _error(
            path,
            f"processing.items.key is {key!r} but the items file holds {describe_type(data)}, "
            "not a mapping; remove the key or wrap the list in a mapping",
            line=_line_of(path, fmt, ()),
        )
    if key not in data:
        keys = [str(k) for k in data]
        shown = ", ".join(repr(k) for k in keys[:10]) + (", ..." if len(keys) > 10 else "")
        raise _error(
            path,
            f"no key {key!r} (processing.items.key) in the items file; it has {shown}",
            line=_line_of(path, fmt, ()),
            key_path=key,
            hint=closest(key, keys),
        )
    value = data[key]
    if not isinstance(value, list):
        raise _error(
            path,
            f"{key!r} must be a list of items, not {describe_type(value)}",
            line=_line_of(path, fmt, (key,)),
            key_path=key,
        )
    return value


def _line_of(path: Path, fmt: ItemsFormat, key_path: tuple[str | int, ...]) -> int | None:
    """Best-effort line lookup for error messages (re-reads the file; error paths only)."""
    if fmt in STREAMED_FORMATS:
        return None
    try:
        _, positions = load_yaml_with_positions(_read_text(path), str(path))
    except Exception:  # JSON that YAML cannot parse (tabs, ...): no line, still an error
        return None
    return positions.line_of(key_path)


# --- JSONL ------------------------------------------------------------------------------------


def _stream_jsonl(path: Path) -> Iterator[tuple[int | None, Any]]:
    decode = _JSON_DECODER.decode
    seen_any = False
    line_no = 0
    try:
        # newline="\n": JSON Lines are separated by LF only (a CR before it is whitespace).
        with path.open("r", encoding="utf-8-sig", newline="\n") as handle:
            for line_no, text in enumerate(handle, start=1):
                if text.isspace():
                    continue
                try:
                    item = decode(text)
                except json.JSONDecodeError as exc:
                    raise _error(
                        path, f"line {line_no} is not valid JSON: {exc.msg}", line=line_no
                    ) from exc
                except RecursionError:
                    raise _error(
                        path, f"line {line_no} is nested too deeply", line=line_no
                    ) from None
                seen_any = True
                yield line_no, item
    except UnicodeDecodeError as exc:
        line = _first_undecodable_line(path) or line_no + 1
        raise _error(path, f"line {line} is not valid UTF-8: {exc.reason}", line=line) from exc
    except OSError as exc:
        raise _error(path, f"cannot read items file: {exc.strerror or exc}") from exc
    if not seen_any:
        raise _error(path, "the items file is empty")


def _first_undecodable_line(path: Path) -> int | None:
    """Error path: the text reader decodes ahead of the line it yields, so find the line."""
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError:
                return line_no
    return None


# --- CSV --------------------------------------------------------------------------------------

_CSV_NO_ROWS = "the CSV items file has a header but no rows"
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?P<frac>\.[0-9]+)?(?P<exp>[eE][+-]?[0-9]+)?")
_NUMBER_START = frozenset("-0123456789")


def convert_cell(cell: str) -> Any:
    """Type one CSV cell: JSON-spelled numbers and ``true``/``false``; anything else unchanged."""
    if not cell:
        return cell
    if cell[0] in _NUMBER_START:
        match = _JSON_NUMBER.fullmatch(cell)
        if match is None:
            return cell
        if match.group("frac") is None and match.group("exp") is None:
            return int(cell)
        value = float(cell)
        return value if math.isfinite(value) else cell
    if cell == "true":
        return True
    if cell == "false":
        return False
    return cell


def _stream_csv(path: Path) -> Iterator[tuple[int | None, Any]]:
    rows = 0
    for line_no, item in _csv_rows(path, typed=True):
        rows += 1
        yield line_no, item
    if rows == 0:
        raise _error(path, _CSV_NO_ROWS, line=1)


def _csv_rows(path: Path, *, typed: bool) -> Iterator[tuple[int, dict[str, Any]]]:
    """(start line, row) per data row; raises on a bad header or a ragged row."""
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, strict=True)
            header: list[str] | None = None
            header_line = 0
            before = 0
            try:
                for row in reader:
                    start, before = before + 1, reader.line_num
                    if not "".join(row).strip():  # blank, or only empty cells (",,,")
                        continue
                    if header is None:
                        header, header_line = _csv_header(path, row, start), start
                        continue
                    if len(row) != len(header):
                        raise _error(
                            path,
                            f"row on line {start} has {len(row)} cells but the header "
                            f"(line {header_line}) has {len(header)}",
                            line=start,
                        )
                    if typed:
                        yield start, dict(zip(header, map(convert_cell, row), strict=True))
                    else:
                        yield start, dict(zip(header, row, strict=True))
            except csv.Error as exc:
                raise _csv_error(path, exc, before + 1) from exc
            except UnicodeDecodeError as exc:
                raise _error(
                    path, f"not valid UTF-8: {exc.reason}", line=reader.line_num + 1
                ) from exc
            if header is None:
                raise _error(path, "the items file is empty")
    except OSError as exc:
        raise _error(path, f"cannot read items file: {exc.strerror or exc}") from exc


def _csv_error(path: Path, exc: csv.Error, start: int) -> ConfigError:
    if "unexpected end of data" in str(exc):
        message = (
            f'the row starting on line {start} opens a quoted cell (") that is never closed, '
            "so it would swallow every line after it"
        )
    else:
        message = f"{exc} (row starting on line {start})"
    return _error(path, f"invalid CSV: {message}", line=start)


def _csv_header(path: Path, row: list[str], line: int) -> list[str]:
    header = [name.strip() for name in row]
    for position, name in enumerate(header, start=1):
        if not name:
            raise _error(path, f"CSV header column {position} has no name", line=line)
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise _error(path, f"CSV header repeats column(s) {', '.join(duplicates)}", line=line)
    return header


# --- helpers ----------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    _require_file(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _error(path, f"cannot read items file: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _error(path, f"not valid UTF-8: {exc.reason}", line=line) from exc


def _require_file(path: Path) -> None:
    if not path.exists():
        raise _error(path, "items file not found")
    if not path.is_file():
        raise _error(path, "the items source is not a file")


def _refuse_key(path: Path, fmt: ItemsFormat, key: str | None) -> None:
    if key is not None:
        raise _error(
            path,
            f"processing.items.key ({key!r}) selects a list inside a YAML/JSON mapping; a "
            f"{fmt.upper()} file is already a list of items, so remove the key",
        )


def describe_type(value: Any) -> str:
    """What a loaded YAML/JSON value is, for messages: ``a mapping``, ``a list``, ``null``,
    ``an empty string``, ``a string``, ``a int`` ... (items files and unit names share it)."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "an empty string" if not value else "a string"
    return f"a {type(value).__name__}"


def _error(
    path: Path,
    message: str,
    *,
    line: int | None = None,
    key_path: str | tuple[str | int, ...] = "",
    hint: str | None = None,
) -> ConfigError:
    path_text = key_path if isinstance(key_path, str) else format_path(key_path)
    return ConfigError.single(str(path), message, line=line, key_path=path_text, hint=hint)
