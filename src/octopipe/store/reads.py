"""Read-only queries over the ledger: a unit's record, pages of results and failures, history.

A unit's *record at step k* (the input of step k) is its ``fields_json`` (its input at its
origin step) merged with the ``output_json`` deltas of its valid steps before k, in step
order. Nothing stores the merged record, so an output is written once and never copied
forward.

Lookups by uid go through ``step_idx IN (SELECT idx FROM steps ...)`` so that SQLite seeks the
``(step_idx, uid)`` primary key once per step instead of scanning it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from octopipe.core.states import UnitStepState
from octopipe.errors import CorruptValue
from octopipe.store.codec import get_blob, loads, parse
from octopipe.store.records import AttemptRow, CostTotals, FailureRow, Json, TierCost, TierTotal
from octopipe.store.schema import has_column, has_table

_VALID = UnitStepState.VALID.value


def json_ints(values: Sequence[int]) -> str:
    """A JSON array literal of integers, passed as one parameter to ``json_each``."""
    return "[" + ",".join(map(str, values)) + "]"


def records(
    conn: sqlite3.Connection, uids: Sequence[int], *, before: int
) -> dict[int, tuple[str, Json]]:
    """``uid -> (unit_id, fields merged with the outputs of its valid steps < before)``."""
    fields, outputs = _record_rows(conn, uids, before)
    out: dict[int, tuple[str, Json]] = {
        uid: (unit_id, unit_json(conn, text, uid, "fields")) for uid, unit_id, text in fields
    }
    for uid, step_idx, text in outputs:
        out[uid][1].update(unit_json(conn, text, uid, "output", step_idx))
    return out


def record_parts(
    conn: sqlite3.Connection, uids: Sequence[int], *, before: int
) -> dict[int, tuple[str, list[tuple[Json, str]]]]:
    """``uid -> (unit_id, parts)``: the documents `records` merges, unmerged, each with the
    stored text it was read from: the unit's fields, then the output of each of its valid
    steps < ``before``, in step order. A damaged one raises as in `records`."""
    fields, outputs = _record_rows(conn, uids, before)
    out = {
        uid: (unit_id, [(unit_json(conn, text, uid, "fields"), text)])
        for uid, unit_id, text in fields
    }
    for uid, step_idx, text in outputs:
        out[uid][1].append((unit_json(conn, text, uid, "output", step_idx), text))
    return out


def _record_rows(
    conn: sqlite3.Connection, uids: Sequence[int], before: int
) -> tuple[list[tuple[int, str, str]], Iterable[tuple[int, int, str]]]:
    """The ``(uid, unit_id, fields_json)`` rows of ``uids``, and the ``(uid, step_idx,
    output_json)`` rows of their valid steps < ``before``, in step order."""
    if not uids:
        return [], []
    arg = json_ints(uids)
    fields = conn.execute(
        """SELECT uid, unit_id, fields_json FROM units
           WHERE uid IN (SELECT value FROM json_each(?))""",
        (arg,),
    ).fetchall()
    outputs = conn.execute(
        """SELECT uid, step_idx, output_json FROM unit_steps
           WHERE step_idx IN (SELECT idx FROM steps WHERE idx < ?)
             AND uid IN (SELECT value FROM json_each(?))
             AND state = ? AND output_json IS NOT NULL
           ORDER BY step_idx""",
        (before, arg, _VALID),
    )
    return fields, outputs


def unit_json(
    conn: sqlite3.Connection, text: str | None, uid: int, what: str, step_idx: int | None = None
) -> Any:
    """A unit's stored JSON (its ``fields``, a step's ``output`` or ``errors``); a damaged one
    raises ``CorruptValue`` naming the unit and the step. Records must be objects."""
    try:
        value = parse(text) if text is not None else None
    except (TypeError, ValueError) as exc:
        problem = f"not valid JSON: {exc}"
    else:
        if what in ("fields", "output") and not isinstance(value, dict):
            problem = f"a JSON {type(value).__name__}, not an object"
        else:
            return value
    raise CorruptValue(
        f"{describe_unit(conn, uid, step_idx)}: its stored {what} cannot be read ({problem}); "
        "`octopipe verify` lists every damaged row"
    )


def describe_unit(conn: sqlite3.Connection, uid: int, step_idx: int | None) -> str:
    """``unit 'a' at step 'judge'`` for messages (only called on the error path)."""
    row = conn.execute("SELECT unit_id FROM units WHERE uid = ?", (uid,)).fetchone()
    text = f"unit {row[0]!r}" if row else f"unit #{uid}"
    if step_idx is not None:
        step = conn.execute("SELECT name FROM steps WHERE idx = ?", (step_idx,)).fetchone()
        text += f" at step {step[0]!r}" if step else f" at step {step_idx}"
    return text


def page(
    conn: sqlite3.Connection, step_idx: int, states: Sequence[str], after: int, limit: int
) -> list[int]:
    """The next ``limit`` uids after ``after`` in ``states`` at a step, in uid order."""
    marks = ",".join("?" * len(states))
    return [
        r[0]
        for r in conn.execute(
            f"""SELECT uid FROM unit_steps INDEXED BY unit_steps_state
                WHERE step_idx = ? AND state IN ({marks}) AND uid > ?
                ORDER BY uid LIMIT ?""",
            (step_idx, *states, after, limit),
        )
    ]


def failure_rows(conn: sqlite3.Connection, step_idx: int, uids: Sequence[int]) -> list[FailureRow]:
    inputs = records(conn, uids, before=step_idx)
    rows = conn.execute(
        """SELECT s.uid, s.state, s.attempts, s.last_stage, s.last_error,
                  a.request_blob, a.response_blob
           FROM unit_steps s LEFT JOIN attempts a ON a.id = s.last_attempt_id
           WHERE s.step_idx = ? AND s.uid IN (SELECT value FROM json_each(?))
           ORDER BY s.uid""",
        (step_idx, json_ints(uids)),
    ).fetchall()
    return [
        FailureRow(
            uid=uid,
            unit_id=inputs[uid][0],
            step_idx=step_idx,
            state=UnitStepState(state),
            attempts=attempts,
            stage=stage,
            errors=unit_json(conn, errors, uid, "errors", step_idx) or [],
            raw_response=_maybe_blob(conn, response),
            request=_maybe_blob(conn, request),
            input=inputs[uid][1],
        )
        for uid, state, attempts, stage, errors, request, response in rows
    ]


def unit_states(conn: sqlite3.Connection, uid: int) -> dict[int, UnitStepState]:
    return {
        k: UnitStepState(s)
        for k, s in conn.execute(
            """SELECT step_idx, state FROM unit_steps
               WHERE step_idx IN (SELECT idx FROM steps) AND uid = ? ORDER BY step_idx""",
            (uid,),
        )
    }


def attempts_of(conn: sqlite3.Connection, uid: int, step_idx: int | None) -> list[AttemptRow]:
    rows = conn.execute(
        """SELECT a.id, u.unit_id, a.step_idx, a.attempt_no, a.outcome, a.mode, a.provider,
                  a.model, a.stage, a.errors_json, a.request_blob, a.response_blob,
                  a.input_tokens, a.output_tokens, a.cached_tokens, a.cost_usd,
                  a.latency_ms, a.started_at, a.finished_at, b.local_id
           FROM attempts a JOIN units u ON u.uid = a.uid
           LEFT JOIN batches b ON b.id = a.batch_id
           WHERE a.uid = ? AND (? IS NULL OR a.step_idx = ?) ORDER BY a.id""",
        (uid, step_idx, step_idx),
    ).fetchall()
    return [
        AttemptRow(
            id=r[0],
            unit_id=r[1],
            step_idx=r[2],
            attempt_no=r[3],
            outcome=r[4],
            mode=r[5],
            provider=r[6],
            model=r[7],
            stage=r[8],
            errors=loads(r[9], what=f"the errors of attempt {r[3]} of unit {r[1]!r}"),
            request=_maybe_blob(conn, r[10]),
            response=_maybe_blob(conn, r[11]),
            input_tokens=r[12],
            output_tokens=r[13],
            cached_tokens=r[14],
            cost_usd=r[15],
            latency_ms=r[16],
            started_at=r[17],
            finished_at=r[18],
            batch_local_id=r[19],
        )
        for r in rows
    ]


def cost_totals(conn: sqlite3.Connection) -> CostTotals:
    """What the LLM attempts add up to: one row kept by triggers (migration
    ``0006_attempt_totals``), or, on a ledger made before it, a scan of every attempt."""
    if has_table(conn, "attempt_totals"):
        row = conn.execute(
            """SELECT COALESCE(cost_usd, 0), unpriced, attempts, input_tokens, output_tokens,
                      cached_tokens
               FROM attempt_totals WHERE kind = 'llm'"""
        ).fetchone()
    else:
        row = scanned_cost_totals(conn)
    return _cost_totals(row)


def scanned_cost_totals(conn: sqlite3.Connection) -> tuple[Any, ...]:
    """The totals of ``attempt_totals`` computed from the attempts themselves."""
    return tuple(
        conn.execute(
            """SELECT COALESCE(SUM(cost_usd), 0), COUNT(*) - COUNT(cost_usd), COUNT(*),
                      COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),
                      COALESCE(SUM(cached_tokens), 0)
               FROM attempts WHERE mode != 'local'"""
        ).fetchone()
    )


def _cost_totals(row: Sequence[Any]) -> CostTotals:
    return CostTotals(
        known_usd=float(row[0]),
        unknown_cost_attempts=row[1],
        attempts=row[2],
        input_tokens=row[3],
        output_tokens=row[4],
        cached_tokens=row[5],
    )


def cost_by_tier(conn: sqlite3.Connection) -> list[TierCost]:
    """`TierCost` per (provider, model, tier) over the answered LLM attempts: rows kept by
    triggers (migration ``0007_cost_groups``), or, on a ledger made before it, a scan."""
    if not has_table(conn, "cost_groups"):
        return scanned_cost_groups(conn)
    rows = conn.execute(
        """SELECT provider, model, tier, calls, input_tokens, output_tokens, cached_tokens,
                  known_usd, unpriced, standard_known_usd, standard_unpriced
           FROM cost_groups WHERE calls > 0 ORDER BY provider, model, tier"""
    ).fetchall()
    return [_tier_cost(r) for r in rows]


def scanned_cost_groups(conn: sqlite3.Connection) -> list[TierCost]:
    """`TierCost` per (provider, model, tier) computed from the attempts themselves: only
    answered ones (an attempt that got no answer used nothing and is left out). An attempt
    recorded before tiers were (no ``tier`` column, or NULL) is in its mode's tier: realtime
    ``standard``, batch ``batch``; its standard-price equivalent is its cost in realtime and
    unknown in batch."""
    mode_tier = "CASE mode WHEN 'batch' THEN 'batch' ELSE 'standard' END"
    if has_column(conn, "attempts", "tier"):
        tier = f"COALESCE(tier, {mode_tier})"
        standard = "CASE WHEN tier IS NULL AND mode = 'batch' THEN NULL WHEN tier IS NULL THEN cost_usd ELSE standard_cost_usd END"
    else:
        tier = mode_tier
        standard = "CASE mode WHEN 'batch' THEN NULL ELSE cost_usd END"
    rows = conn.execute(
        f"""SELECT COALESCE(provider, '') AS p, COALESCE(model, '') AS m, {tier} AS t, COUNT(*),
                   COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),
                   COALESCE(SUM(cached_tokens), 0),
                   COALESCE(SUM(cost_usd), 0), COUNT(*) - COUNT(cost_usd),
                   COALESCE(SUM({standard}), 0), COUNT(*) - COUNT({standard})
            FROM attempts
            WHERE mode != 'local'
              AND NOT (outcome = 'error' AND input_tokens = 0 AND output_tokens = 0
                       AND cost_usd IS NOT NULL AND cost_usd = 0)
            GROUP BY p, m, t ORDER BY p, m, t"""
    ).fetchall()
    return [_tier_cost(r) for r in rows]


def _tier_cost(r: Sequence[Any]) -> TierCost:
    return TierCost(
        provider=str(r[0] or ""),
        model=str(r[1] or ""),
        tier=str(r[2]),
        calls=r[3],
        input_tokens=r[4],
        output_tokens=r[5],
        cached_tokens=r[6],
        known_usd=float(r[7]),
        unknown_calls=r[8],
        standard_known_usd=float(r[9]),
        standard_unknown_calls=r[10],
    )


def tier_totals(conn: sqlite3.Connection) -> list[TierTotal]:
    """What each tier's answered LLM calls cost, costliest first (from ``cost_by_tier``)."""
    by_tier: dict[str, list[TierCost]] = {}
    for group in cost_by_tier(conn):
        by_tier.setdefault(group.tier, []).append(group)
    totals = [
        TierTotal(
            tier,
            sum(g.calls for g in groups),
            sum(g.known_usd for g in groups),
            sum(g.unknown_calls for g in groups),
        )
        for tier, groups in by_tier.items()
    ]
    return sorted(totals, key=lambda t: (-t.known_usd, -t.calls, t.tier))


def _maybe_blob(conn: sqlite3.Connection, blob_id: int | None) -> str | None:
    return None if blob_id is None else get_blob(conn, blob_id)
