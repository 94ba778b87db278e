"""Provider batches in the ledger: intent before the call, then the provider's verdicts.

The submission protocol this supports (driven by the engine):

1. claim units, then :func:`create_intent` (state ``intent``) and commit — *before* calling
   the provider;
2. submit; on success ``submit_ok`` with the provider's id;
3. on restart, every ``intent`` batch is reconciled against the provider's list of batches
   (``reconcile_found`` or ``reconcile_missing``), so a crash between the call and the record
   never creates an orphan or a duplicate.

A unit sits in at most one live batch of a step; units of a batch that reaches a terminal
state without a result go back to ``pending``. These functions run inside the caller's
transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from octopipe.core.states import (
    BATCH_TERMINAL,
    BatchEvent,
    BatchState,
    UnitStepEvent,
    UnitStepState,
    advance,
)
from octopipe.errors import StoreError
from octopipe.store.records import BatchRow

__all__ = [
    "BatchEvent",
    "BatchState",
    "advance_batch",
    "create_intent",
    "note_status",
    "select",
    "units_of",
]

_COLUMNS = """id, local_id, step_idx, provider, model, provider_batch_id, state, n_units,
              content_hash, estimate_usd, actual_usd, created_at, submitted_at, finished_at,
              provider_status, error"""
_TERMINAL = tuple(sorted(s.value for s in BATCH_TERMINAL))


def _row(r: Sequence[object]) -> BatchRow:
    values = list(r)
    values[6] = BatchState(str(values[6]))
    return BatchRow(*values)  # type: ignore[arg-type]


def _get(conn: sqlite3.Connection, local_id: str) -> BatchRow:
    r = conn.execute(f"SELECT {_COLUMNS} FROM batches WHERE local_id = ?", (local_id,)).fetchone()
    if r is None:
        raise StoreError(f"no batch {local_id!r} in the ledger")
    return _row(r)


def create_intent(
    conn: sqlite3.Connection,
    local_id: str,
    step_idx: int,
    provider: str,
    model: str,
    uids: Sequence[int],
    content_hash: str,
    estimate_usd: float | None,
    now: str,
) -> BatchRow:
    if not uids:
        raise ValueError("a batch needs at least one unit")
    arg = "[" + ",".join(map(str, uids)) + "]"
    not_claimed = conn.execute(
        """SELECT COUNT(*) FROM (SELECT value AS uid FROM json_each(?)) j
           WHERE NOT EXISTS (SELECT 1 FROM unit_steps s WHERE s.uid = j.uid
                             AND s.step_idx = ? AND s.state = ?)""",
        (arg, step_idx, UnitStepState.IN_FLIGHT.value),
    ).fetchone()[0]
    if not_claimed:
        raise StoreError(f"batch {local_id}: {not_claimed} unit(s) are not claimed at this step")
    busy = conn.execute(
        f"""SELECT COUNT(*) FROM batch_units bu JOIN batches b ON b.id = bu.batch_id
            WHERE bu.uid IN (SELECT value FROM json_each(?)) AND b.step_idx = ?
              AND b.state NOT IN ({",".join("?" * len(_TERMINAL))})""",
        (arg, step_idx, *_TERMINAL),
    ).fetchone()[0]
    if busy:
        raise StoreError(f"batch {local_id}: {busy} unit(s) are already in a live batch")
    try:
        cur = conn.execute(
            """INSERT INTO batches(local_id, step_idx, provider, model, state, n_units,
                   content_hash, estimate_usd, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                local_id,
                step_idx,
                provider,
                model,
                BatchState.INTENT.value,
                len(uids),
                content_hash,
                estimate_usd,
                now,
            ),
        )
    except sqlite3.IntegrityError:
        raise StoreError(f"batch {local_id!r} already exists") from None
    conn.execute(
        "INSERT INTO batch_units(batch_id, uid) SELECT ?, value FROM json_each(?)",
        (cur.lastrowid, arg),
    )
    return _get(conn, local_id)


def advance_batch(
    conn: sqlite3.Connection,
    local_id: str,
    event: BatchEvent,
    provider_batch_id: str | None,
    provider_status: str | None,
    error: str | None,
    actual_usd: float | None,
    now: str,
) -> tuple[BatchRow, int]:
    """Apply ``event``; return the new row and how many unfinished units were released."""
    old = _get(conn, local_id)
    new = advance(old.state, event)
    conn.execute(
        """UPDATE batches SET state = ?,
               provider_batch_id = COALESCE(?, provider_batch_id),
               provider_status = COALESCE(?, provider_status),
               error = COALESCE(?, error),
               actual_usd = COALESCE(?, actual_usd),
               submitted_at = CASE WHEN ? THEN COALESCE(submitted_at, ?) ELSE submitted_at END,
               finished_at = CASE WHEN ? THEN ? ELSE finished_at END
           WHERE id = ?""",
        (
            new.value,
            provider_batch_id,
            provider_status,
            error,
            actual_usd,
            new is BatchState.SUBMITTED,
            now,
            new in BATCH_TERMINAL,
            now,
            old.id,
        ),
    )
    if new is BatchState.COLLECTED and actual_usd is None:  # what its answers actually cost
        conn.execute(
            """UPDATE batches SET actual_usd =
                   (SELECT SUM(cost_usd) FROM attempts WHERE batch_id = ?) WHERE id = ?""",
            (old.id, old.id),
        )
    released = 0
    if new in BATCH_TERMINAL:
        back = advance(UnitStepState.IN_FLIGHT, UnitStepEvent.RELEASE)
        released = conn.execute(
            """UPDATE unit_steps SET state = ?, updated_at = ?
               WHERE step_idx = ? AND state = ?
                 AND uid IN (SELECT uid FROM batch_units WHERE batch_id = ?)""",
            (back.value, now, old.step_idx, UnitStepState.IN_FLIGHT.value, old.id),
        ).rowcount
    return _get(conn, local_id), released


def select(
    conn: sqlite3.Connection, states: Sequence[BatchState], step_idx: int | None
) -> list[BatchRow]:
    values = [s.value for s in states] or [s.value for s in BatchState]
    return [
        _row(r)
        for r in conn.execute(
            f"""SELECT {_COLUMNS} FROM batches
                WHERE state IN ({",".join("?" * len(values))}) AND (? IS NULL OR step_idx = ?)
                ORDER BY id""",
            (*values, step_idx, step_idx),
        )
    ]


def units_of(conn: sqlite3.Connection, local_id: str) -> list[int]:
    batch = _get(conn, local_id)
    return [
        r[0]
        for r in conn.execute(
            "SELECT uid FROM batch_units WHERE batch_id = ? ORDER BY uid", (batch.id,)
        )
    ]


def note_status(conn: sqlite3.Connection, local_id: str, provider_status: str) -> None:
    """Remember what the provider last said about a batch (progress), state unchanged."""
    _get(conn, local_id)
    conn.execute(
        "UPDATE batches SET provider_status = ? WHERE local_id = ?", (provider_status, local_id)
    )
