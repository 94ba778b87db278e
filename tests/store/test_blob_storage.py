"""Blobs: short texts stored as TEXT, long ones compressed; both read back identically."""

from __future__ import annotations

import sqlite3

from octopipe.store.codec import COMPRESS_FROM, get_blob, put_blob


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE blobs (id INTEGER PRIMARY KEY, sha256 BLOB NOT NULL UNIQUE,"
        " size INTEGER NOT NULL, data BLOB NOT NULL)"
    )
    return conn


def test_short_text_is_stored_plain_and_read_back() -> None:
    conn = _db()
    blob = put_blob(conn, '{"answer": "é"}')
    assert conn.execute("SELECT typeof(data) FROM blobs").fetchone()[0] == "text"
    assert get_blob(conn, blob) == '{"answer": "é"}'


def test_long_text_is_compressed_and_read_back() -> None:
    conn = _db()
    text = "x" * COMPRESS_FROM
    blob = put_blob(conn, text)
    kind, length = conn.execute("SELECT typeof(data), length(data) FROM blobs").fetchone()
    assert (kind, get_blob(conn, blob)) == ("blob", text)
    assert length < COMPRESS_FROM


def test_same_text_is_stored_once() -> None:
    conn = _db()
    assert put_blob(conn, "short") == put_blob(conn, "short")
    assert conn.execute("SELECT count(*) FROM blobs").fetchone()[0] == 1
