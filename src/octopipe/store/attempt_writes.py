"""Writing attempts: their rows, their blobs, and the kept totals, in the caller's transaction.

`insert_attempts` numbers the new rows itself (ids follow the largest stored one), stores each
request and response once among the blobs, and adds the new id range to ``attempt_totals``
and ``cost_groups`` with two statements (migration 0008), so a kill -9 leaves attempts and
totals together or neither. An attempt number already stored raises a `StoreError` that says
how to mend the ledger (``octopipe repair``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from octopipe.errors import StoreError
from octopipe.store import reads
from octopipe.store.codec import dumps, put_blobs
from octopipe.store.connection import store_error
from octopipe.store.records import AttemptRecord
from octopipe.store.schema import COST_GROUPS_ADD_RANGE, TOTALS_ADD_RANGE


def insert_attempts(
    db: sqlite3.Connection,
    where: str,
    step_idx: int,
    items: Sequence[tuple[int, int, AttemptRecord | None]],
    now: str,
) -> dict[int, int]:
    """Insert attempts ``(uid, attempt_no, record)`` and add them to the kept totals
    (``attempt_totals``, ``cost_groups``: two statements over the new ids, migration
    0008); returns ``uid -> attempt id``."""
    records = [a for _, _, a in items if a is not None]
    if len(records) != len(items):
        raise ValueError("every attempt to insert needs its record")
    if not records:
        return {}
    first = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM attempts").fetchone()[0]
    texts: list[str | None] = []
    for a in records:
        texts.append(a.request)
        texts.append(a.response)
    blob_ids = put_blobs(db, texts)
    batch_ids: dict[str, int] = {}
    rows = [
        (
            first + i,
            uid,
            step_idx,
            attempt_no,
            a.mode,
            a.provider,
            a.model,
            _batch_id(db, a.batch_local_id, batch_ids),
            a.started_at,
            a.finished_at or now,
            a.outcome,
            a.stage,
            "[]" if not a.errors else dumps(a.errors, what=f"errors of unit {uid}"),
            blob_ids[2 * i],
            blob_ids[2 * i + 1],
            a.input_tokens,
            a.output_tokens,
            a.cached_tokens,
            a.cost_usd,
            a.latency_ms,
            a.tier,
            a.standard_cost_usd,
        )
        for i, ((uid, attempt_no, _), a) in enumerate(zip(items, records, strict=True))
    ]
    try:
        db.executemany(
            """INSERT INTO attempts(id, uid, step_idx, attempt_no, mode, provider, model,
                   batch_id, started_at, finished_at, outcome, stage, errors_json,
                   request_blob, response_blob, input_tokens, output_tokens,
                   cached_tokens, cost_usd, latency_ms, tier, standard_cost_usd)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
                       ?, ?)""",
            rows,
        )
    except sqlite3.IntegrityError as exc:
        taken = _taken_attempt(db, where, step_idx, [(r[1], r[3]) for r in rows])
        raise (taken or store_error(exc, where)) from None
    span = (first, first + len(rows) - 1)
    db.execute(TOTALS_ADD_RANGE, span)
    db.execute(COST_GROUPS_ADD_RANGE, span)
    return {row[1]: row[0] for row in rows}


def _taken_attempt(
    db: sqlite3.Connection, where: str, step_idx: int, numbered: Sequence[tuple[int, int]]
) -> StoreError | None:
    """The error for an attempt whose number is already stored: the unit-step's counter
    is behind its history (a row recreated by hand or by an old repair)."""
    for uid, attempt_no in numbered:
        if db.execute(
            "SELECT 1 FROM attempts WHERE uid = ? AND step_idx = ? AND attempt_no = ?",
            (uid, step_idx, attempt_no),
        ).fetchone():
            return StoreError(
                f"run ledger {where}: {reads.describe_unit(db, uid, step_idx)}: "
                f"attempt {attempt_no} is already stored (the attempt counter is behind the "
                "stored attempts); `octopipe repair RUN` raises it"
            )
    return None


def _batch_id(db: sqlite3.Connection, local_id: str | None, cache: dict[str, int]) -> int | None:
    if local_id is None:
        return None
    if local_id not in cache:
        found = db.execute("SELECT id FROM batches WHERE local_id = ?", (local_id,)).fetchone()
        if found is None:
            raise StoreError(f"attempt refers to unknown batch {local_id!r}")
        cache[local_id] = found[0]
    return cache[local_id]


__all__ = ["insert_attempts"]
