"""Accounting over the whole ledger: per-step counts, missing units, verification, repair.

Who is *expected* at step k (the set E_k):

* every unit whose ``origin_step`` is k (generated units at 0, fan-out children at k+1 of
  their fan-out step k), and
* when step k-1 exists and is not a fan-out step, every unit valid at step k-1 (a fan-out
  parent stops at its fan-out step; its children carry on).

With R_k the units that have a row at step k: *missing* = E_k - R_k, *orphaned* = R_k - E_k.
A unit is *duplicated* at k when it sits in more than one live batch of that step (a double
submission); two rows for one unit at one step cannot exist, ``(step_idx, uid)`` being the
primary key.

Speed: each set is read in uid order from an index (``units_origin``, ``unit_steps_state``,
and the ``(step_idx, uid)`` primary key), so SQLite computes the differences as ordered merges
(``EXCEPT ... ORDER BY``) instead of one random lookup per unit. Every list is complete: no
id is ever dropped for display.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from octopipe.core.states import BATCH_TERMINAL, UnitStepState
from octopipe.store.reads import json_ints
from octopipe.store.records import StepDef, StepReport, VerifyReport

_VALID = UnitStepState.VALID.value
_TERMINAL_BATCH = tuple(sorted(s.value for s in BATCH_TERMINAL))

# The three ordered sets, as sub-selects over covering indexes.
_ORIGIN = "SELECT uid FROM units INDEXED BY units_origin WHERE origin_step = :k"
_PREV_VALID = (
    "SELECT uid FROM unit_steps INDEXED BY unit_steps_state "
    "WHERE step_idx = :k - 1 AND state = :valid"
)
_ROWS = "SELECT uid FROM unit_steps WHERE step_idx = :k"


def counts(conn: sqlite3.Connection, n_steps: int) -> dict[int, dict[UnitStepState, int]]:
    """Rows per state at every step, every state present (one index range count each)."""
    return {
        k: {
            state: conn.execute(
                """SELECT COUNT(*) FROM unit_steps INDEXED BY unit_steps_state
                   WHERE step_idx = ? AND state = ?""",
                (k, state.value),
            ).fetchone()[0]
            for state in UnitStepState
        }
        for k in range(n_steps)
    }


def _expected_sql(steps: Sequence[StepDef], k: int) -> str:
    follows = k > 0 and steps[k - 1].scope != "fan_out"
    return f"{_ORIGIN} UNION {_PREV_VALID}" if follows else _ORIGIN


def missing_uids(conn: sqlite3.Connection, steps: Sequence[StepDef], k: int) -> list[int]:
    """E_k - R_k: every expected unit without a row at step ``k``, in uid order."""
    sql = f"{_expected_sql(steps, k)} EXCEPT {_ROWS} ORDER BY 1"
    return [r[0] for r in conn.execute(sql, {"k": k, "valid": _VALID})]


def orphaned_uids(conn: sqlite3.Connection, steps: Sequence[StepDef], k: int) -> list[int]:
    """R_k - E_k: rows at step ``k`` whose unit was never expected there, in uid order."""
    follows = k > 0 and steps[k - 1].scope != "fan_out"
    sql = f"{_ROWS} EXCEPT {_ORIGIN}" + (f" EXCEPT {_PREV_VALID}" if follows else "")
    return [r[0] for r in conn.execute(sql + " ORDER BY 1", {"k": k, "valid": _VALID})]


def duplicated_uids(conn: sqlite3.Connection, k: int) -> list[int]:
    """Units sitting in more than one live (non-terminal) batch of step ``k``."""
    marks = ",".join("?" * len(_TERMINAL_BATCH))
    return [
        r[0]
        for r in conn.execute(
            f"""SELECT bu.uid FROM batch_units bu JOIN batches b ON b.id = bu.batch_id
                WHERE b.step_idx = ? AND b.state NOT IN ({marks})
                GROUP BY bu.uid HAVING COUNT(*) > 1 ORDER BY bu.uid""",
            (k, *_TERMINAL_BATCH),
        )
    ]


def unit_ids(conn: sqlite3.Connection, uids: Sequence[int]) -> list[str]:
    """The unit ids of ``uids``, in the same order."""
    if not uids:
        return []
    by_uid = dict(
        conn.execute(
            "SELECT uid, unit_id FROM units WHERE uid IN (SELECT value FROM json_each(?))",
            (json_ints(uids),),
        )
    )
    return [by_uid[u] for u in uids]


def find_missing(conn: sqlite3.Connection, steps: Sequence[StepDef]) -> dict[int, list[str]]:
    """Every missing unit id, per step (steps with none are left out)."""
    out: dict[int, list[str]] = {}
    for k in range(len(steps)):
        missing = missing_uids(conn, steps, k)
        if missing:
            out[k] = unit_ids(conn, missing)
    return out


def repair_missing(conn: sqlite3.Connection, steps: Sequence[StepDef], now: str) -> int:
    """Give every missing unit a ``pending`` row at the step where it is missing."""
    total = 0
    for k in range(len(steps)):
        missing = missing_uids(conn, steps, k)
        conn.executemany(
            "INSERT INTO unit_steps(uid, step_idx, state, updated_at) VALUES (?, ?, ?, ?)",
            ((uid, k, UnitStepState.PENDING.value, now) for uid in missing),
        )
        total += len(missing)
    return total


def origin_count(conn: sqlite3.Connection, k: int) -> int:
    return int(
        conn.execute(
            "SELECT COUNT(*) FROM units INDEXED BY units_origin WHERE origin_step = ?", (k,)
        ).fetchone()[0]
    )


def verify(conn: sqlite3.Connection, steps: Sequence[StepDef]) -> VerifyReport:
    per_state = counts(conn, len(steps))
    reports = []
    orphans_upstream = False
    for k, step in enumerate(steps):
        c = per_state[k]
        rows = sum(c.values())
        missing = missing_uids(conn, steps, k)
        if orphans_upstream:
            orphaned = orphaned_uids(conn, steps, k)
        else:
            # With no orphan at any earlier step, "origin is k" and "valid at k-1" are disjoint
            # (a unit valid at k-1 was expected there, hence has origin <= k-1), so |E| is two
            # index counts and |R - E| = |R| - (|E| - |E - R|). The merge runs only if needed.
            follows = k > 0 and steps[k - 1].scope != "fan_out"
            expected = origin_count(conn, k) + (
                per_state[k - 1][UnitStepState.VALID] if follows else 0
            )
            n_orphaned = rows - (expected - len(missing))
            orphaned = orphaned_uids(conn, steps, k) if n_orphaned else []
        orphans_upstream = orphans_upstream or bool(orphaned)
        reports.append(
            StepReport(
                step_idx=k,
                name=step.name,
                # |E| = |R ∩ E| + |E - R| = (|R| - |R - E|) + |E - R|
                expected=rows - len(orphaned) + len(missing),
                valid=c[UnitStepState.VALID],
                failed=c[UnitStepState.FAILED],
                exhausted=c[UnitStepState.EXHAUSTED],
                pending=c[UnitStepState.PENDING],
                in_flight=c[UnitStepState.IN_FLIGHT],
                missing=unit_ids(conn, missing),
                duplicated=unit_ids(conn, duplicated_uids(conn, k)),
                orphaned=unit_ids(conn, orphaned),
            )
        )
    return VerifyReport(reports)
