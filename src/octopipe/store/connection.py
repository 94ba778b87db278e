"""Opening SQLite connections for the ledger, and turning SQLite failures into ``StoreError``.

Settings (see ``store/README.md`` for the reasoning):

* ``journal_mode=WAL``: readers never block the writer and the writer never blocks readers.
* ``synchronous=NORMAL``: in WAL mode a commit is safe against a crash or ``kill -9`` of the
  process (the WAL frame is in the OS before ``COMMIT`` returns); only an OS crash or power cut
  can lose the last few commits, never corrupt the file. ``durable=True`` selects ``FULL``.
* ``foreign_keys=ON``, ``busy_timeout`` so a second writer (a CLI queueing a command) waits for
  the runner's short transactions instead of failing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from octopipe.errors import StoreError

BUSY_TIMEOUT_MS = 10_000
CACHE_KIB = 65_536


def connect(
    path: Path | None, *, readonly: bool = False, durable: bool = False
) -> sqlite3.Connection:
    """A configured connection to ``path`` (``None``: a private in-memory database)."""
    if path is None:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    elif readonly:
        uri = path.resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if path is not None and not readonly:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"run ledger {path} cannot use WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        conn.execute("PRAGMA temp_store = MEMORY")
    except BaseException:
        conn.close()
        raise
    return conn


def store_error(exc: sqlite3.Error, where: str) -> StoreError:
    """A ``StoreError`` that says what went wrong, classified by SQLite's error code."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        what = "is corrupt"
        advice = "; restore it from a backup"
    elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        what = "is busy (another process holds a write transaction)"
        advice = "; try again"
    elif name.startswith("SQLITE_READONLY"):
        what = "is read-only"
        advice = ""
    elif name.startswith("SQLITE_FULL"):
        what = "cannot grow: the disk is full"
        advice = ""
    elif name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN")):
        what = "cannot be read or written (I/O error)"
        advice = ""
    else:
        what = "failed"
        advice = ""
    return StoreError(f"run ledger {where} {what}: {exc}{advice}")
