"""How values are written into the ledger: compact JSON, compressed deduplicated blobs, UTC time.

JSON is strict (``NaN``/``Infinity`` refused) so every stored document is readable by any JSON
parser, including SQLite's own. Blobs hold large texts (requests, raw responses) once per
distinct content, keyed by SHA-256. A text of at least ``COMPRESS_FROM`` bytes is stored
zlib-compressed (a BLOB value); a shorter one is stored as it is (a TEXT value), since zlib's
per-call set-up costs far more than it saves on a few hundred bytes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from json.scanner import make_scanner
from typing import Any

from octopipe.errors import CorruptValue, StoreError, UnstorableValue

Clock = Callable[[], str]


def utc_now() -> str:
    """ISO-8601 UTC with milliseconds and a ``Z``, from one reading of the clock."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_C_ENCODE = c_make_encoder(  # the C encoder behind _ENCODER, built once instead of per call
    None, _ENCODER.default, encode_basestring, None, ":", ",", False, False, False
)
"""Compact, non-ASCII kept, NaN refused: ``_ENCODER.encode``'s output at about two thirds of
its cost on small records. Without circular-reference markers a cycle ends in
``RecursionError``, which :func:`dumps` reports like any other unstorable value."""
_SCAN = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # typeshed: the class is its own argument


def dumps(value: Any, *, what: str) -> str:
    """Compact strict JSON; a value that cannot be stored raises ``StoreError`` naming ``what``."""
    try:
        if _C_ENCODE is None:  # an interpreter without the C accelerator
            return _ENCODER.encode(value)
        if type(value) is str:
            return encode_basestring(value)
        return "".join(_C_ENCODE(value, 0))
    except (TypeError, ValueError, RecursionError) as exc:
        raise UnstorableValue(f"{what} cannot be stored as JSON: {exc}") from None


def parse(text: Any) -> Any:
    """``json.loads(text)``, the same value or the same error, at about a third of its cost
    on what the ledger writes: the scanner is called directly, and anything it does not read
    whole (surrounding space, a damaged or non-text value) goes through ``json.loads``."""
    try:
        value, end = _SCAN(text, 0)
    except Exception:  # StopIteration, a decoding error, not a string: json.loads says why
        return json.loads(text)
    if end != len(text):
        return json.loads(text)
    return value


def loads(text: str | None, *, what: str = "a stored value") -> Any:
    """Read back a JSON document; damage (a hand edit, a bad sector) raises ``CorruptValue``
    naming ``what`` (the unit and step, the attempt ...) instead of a bare decoding error."""
    if text is None:
        return None
    try:
        return parse(text)
    except (TypeError, ValueError) as exc:
        raise CorruptValue(
            f"{what} is corrupt (not valid JSON: {exc}); `octopipe verify` lists every damaged row"
        ) from None


COMPRESS_FROM = 1024
"""Texts of at least this many UTF-8 bytes are stored compressed; shorter ones as TEXT."""


def put_blob(conn: sqlite3.Connection, text: str) -> int:
    """Store ``text`` once; return the id of the (possibly pre-existing) blob holding it.

    The key is the SHA-256 of the UTF-8 text whichever way it is stored, so a text is stored
    once even if an older ledger holds it compressed."""
    raw = text.encode("utf-8")
    digest = hashlib.sha256(raw).digest()
    data: str | bytes = zlib.compress(raw, 6) if len(raw) >= COMPRESS_FROM else text
    cur = conn.execute(
        "INSERT OR IGNORE INTO blobs(sha256, size, data) VALUES (?, ?, ?)",
        (digest, len(raw), data),
    )
    if cur.rowcount == 1 and cur.lastrowid is not None:
        return cur.lastrowid
    row = conn.execute("SELECT id FROM blobs WHERE sha256 = ?", (digest,)).fetchone()
    return int(row[0])


_LOOKUP_AT_ONCE = 500
"""Digests looked up per query by :func:`put_blobs` (well under SQLite's variable limit)."""


def put_blobs(conn: sqlite3.Connection, texts: Sequence[str | None]) -> list[int | None]:
    """:func:`put_blob` for many texts (``None`` stays ``None``), in one pass: the digests
    already stored are looked up a few hundred at a time, the new texts inserted in one
    ``executemany`` with the next free ids. Must run inside the caller's write transaction
    (no other writer can add a blob between the lookup and the insert)."""
    digests: dict[bytes, int | None] = {}
    keyed: list[bytes | None] = []
    fresh: dict[bytes, tuple[int, str | bytes]] = {}
    for text in texts:
        if text is None:
            keyed.append(None)
            continue
        raw = text.encode("utf-8")
        digest = hashlib.sha256(raw).digest()
        keyed.append(digest)
        if digest not in digests:
            digests[digest] = None
            fresh[digest] = (len(raw), zlib.compress(raw, 6) if len(raw) >= COMPRESS_FROM else text)
    wanted = list(digests)
    for start in range(0, len(wanted), _LOOKUP_AT_ONCE):
        part = wanted[start : start + _LOOKUP_AT_ONCE]
        marks = ",".join("?" * len(part))
        for digest, blob_id in conn.execute(
            f"SELECT sha256, id FROM blobs WHERE sha256 IN ({marks})", part
        ):
            digests[digest] = blob_id
            del fresh[digest]
    if fresh:
        first = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM blobs").fetchone()[0]
        rows = [
            (first + i, digest, size, data)
            for i, (digest, (size, data)) in enumerate(fresh.items())
        ]
        conn.executemany("INSERT INTO blobs(id, sha256, size, data) VALUES (?, ?, ?, ?)", rows)
        for blob_id, digest, _, _ in rows:
            digests[digest] = blob_id
    return [None if d is None else digests[d] for d in keyed]


def get_blob(conn: sqlite3.Connection, blob_id: int) -> str:
    row = conn.execute("SELECT data FROM blobs WHERE id = ?", (blob_id,)).fetchone()
    if row is None:
        raise StoreError(f"no blob with id {blob_id} in the ledger")
    return decompress(row[0])


def decompress(data: bytes | str) -> str:
    """The text of a stored blob value: a TEXT value as it is, a BLOB value inflated."""
    if isinstance(data, str):
        return data
    try:
        return zlib.decompress(data).decode("utf-8")
    except (zlib.error, UnicodeDecodeError) as exc:
        raise StoreError(f"a stored blob is corrupt: {exc}") from None
