"""Blobs: short texts stored as TEXT, long ones compressed; both read back identically."""

from __future__ import annotations

import sqlite3

from octopipe.store.codec import COMPRESS_FROM, get_blob, put_blob, put_blobs


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


def test_many_texts_at_once_are_stored_once_each_beside_what_is_there() -> None:
    conn = _db()
    old = put_blob(conn, "already stored")
    long = "y" * (COMPRESS_FROM + 5)
    texts = ["new", None, "already stored", "new", long, None, "other"]
    ids = put_blobs(conn, texts)
    assert ids[1] is None and ids[5] is None
    assert ids[2] == old and ids[0] == ids[3] != old
    assert len({ids[0], ids[2], ids[4], ids[6]}) == 4
    assert [None if i is None else get_blob(conn, i) for i in ids] == texts
    assert conn.execute("SELECT count(*) FROM blobs").fetchone()[0] == 4
    assert conn.execute("SELECT typeof(data) FROM blobs WHERE id = ?", (ids[4],)).fetchone() == (
        "blob",
    )
    assert put_blobs(conn, texts) == ids  # a second time, nothing new
    assert conn.execute("SELECT count(*) FROM blobs").fetchone()[0] == 4


def test_many_texts_look_up_past_one_query_worth_of_digests() -> None:
    conn = _db()
    texts = [f"t{i}" for i in range(1_234)]
    first = put_blobs(conn, texts[:700])
    ids = put_blobs(conn, texts)
    assert ids[:700] == first and len(set(ids)) == 1_234
    assert [get_blob(conn, i) for i in ids if i is not None] == texts
