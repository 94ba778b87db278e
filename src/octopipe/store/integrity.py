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

Beyond the sets, a row must agree with its history and its values must be readable:

* *miscounted*: ``unit_steps.attempts`` counts every attempt at the step and numbers the next
  one, so it can never be below the highest ``attempt_no`` stored for that unit-step (a row
  recreated from nothing would make the next attempt collide with an old one);
* *stranded*: in flight, in no open batch, while no runner is live (the caller says which);
* *corrupt*: a stored JSON value (fields, output, errors) that does not parse, or a record
  that is not an object.

The LLM totals row of migration ``0006_attempt_totals`` must equal a scan of the attempts
(``totals_check``); plain ``verify`` checks it too (one pass over a covering index).

Those two read every attempt and every stored value: the costly part of ``verify`` (several
times the set checks on a big run). ``deep=False`` skips them (plain ``verify``; ``verify --deep`` runs them).

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
from octopipe.store.records import RepairCounts, StepDef, StepReport, VerifyReport
from octopipe.store.totals_check import rebuild_totals, totals_problems

_VALID = UnitStepState.VALID.value
_IN_FLIGHT = UnitStepState.IN_FLIGHT.value
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


def repair(conn: sqlite3.Connection, steps: Sequence[StepDef], now: str) -> RepairCounts:
    """Give every missing unit a ``pending`` row at the step where it is missing, and raise
    every attempt counter that is behind its stored attempts.

    A recreated row takes up its unit's history: its counter starts at the highest attempt
    number stored for that unit-step (so the next attempt gets a new number) and its budget
    starts afresh (``attempts_base`` = ``attempts``: a requeue, like ``retry``). A raised
    counter keeps the budget the unit had used (``attempts_base`` moves with it). A LLM
    totals row that disagrees with the attempts is rebuilt from them."""
    total = 0
    for k in range(len(steps)):
        missing = missing_uids(conn, steps, k)
        conn.executemany(
            """INSERT INTO unit_steps(uid, step_idx, state, attempts, attempts_base,
                   last_attempt_id, updated_at)
               SELECT :uid, :k, :pending, COALESCE(MAX(attempt_no), 0),
                      COALESCE(MAX(attempt_no), 0),
                      (SELECT id FROM attempts WHERE uid = :uid AND step_idx = :k
                       ORDER BY attempt_no DESC LIMIT 1), :now
               FROM attempts WHERE uid = :uid AND step_idx = :k""",
            (
                {"uid": uid, "k": k, "pending": UnitStepState.PENDING.value, "now": now}
                for uid in missing
            ),
        )
        total += len(missing)
    recounted = 0
    for k, uids in miscounted_uids(conn).items():
        conn.executemany(
            """UPDATE unit_steps SET
                   attempts_base = attempts_base + (:top - attempts), attempts = :top,
                   updated_at = :now
               WHERE step_idx = :k AND uid = :uid""",
            ({"top": top, "k": k, "uid": uid, "now": now} for uid, top in uids),
        )
        recounted += len(uids)
    return RepairCounts(missing=total, recounted=recounted, totals=rebuild_totals(conn))


def miscounted_uids(conn: sqlite3.Connection) -> dict[int, list[tuple[int, int]]]:
    """Per step, ``(uid, highest attempt_no)`` of every row whose attempt counter is behind
    its stored attempts (one pass over the attempts' unique index)."""
    out: dict[int, list[tuple[int, int]]] = {}
    for k, uid, top in conn.execute(
        """SELECT a.step_idx, a.uid, a.top
           FROM (SELECT uid, step_idx, MAX(attempt_no) AS top FROM attempts
                 GROUP BY uid, step_idx) a
           JOIN unit_steps s ON s.step_idx = a.step_idx AND s.uid = a.uid
           WHERE s.attempts < a.top ORDER BY a.step_idx, a.uid"""
    ):
        out.setdefault(k, []).append((uid, top))
    return out


def stranded_uids(conn: sqlite3.Connection, k: int) -> list[int]:
    """Units in flight at step ``k`` that no open batch holds (realtime calls, or a local
    chunk, of a runner that is gone if none is live)."""
    marks = ",".join("?" * len(_TERMINAL_BATCH))
    return [
        r[0]
        for r in conn.execute(
            f"""SELECT uid FROM unit_steps INDEXED BY unit_steps_state
                WHERE step_idx = ? AND state = ? AND uid NOT IN (
                    SELECT bu.uid FROM batch_units bu JOIN batches b ON b.id = bu.batch_id
                    WHERE b.step_idx = ? AND b.state NOT IN ({marks}))
                ORDER BY uid""",
            (k, _IN_FLIGHT, k, *_TERMINAL_BATCH),
        )
    ]


# A record (fields, a step's output) must be a JSON object; errors may be any JSON.
_NOT_OBJECT = "CASE WHEN json_valid({0}) THEN json_type({0}) <> 'object' ELSE 1 END"


def corrupt_uids(conn: sqlite3.Connection, n_steps: int) -> dict[int, list[int]]:
    """Per step, the units with a stored value that cannot be read back: their fields (at
    their origin step), a step's output or last errors, or the errors of an attempt."""
    found: dict[int, set[int]] = {}
    queries = (
        f"SELECT origin_step, uid FROM units WHERE {_NOT_OBJECT.format('fields_json')}",
        f"""SELECT step_idx, uid FROM unit_steps
            WHERE (output_json IS NOT NULL AND {_NOT_OBJECT.format("output_json")})
               OR (last_error IS NOT NULL AND NOT json_valid(last_error))""",
        "SELECT step_idx, uid FROM attempts WHERE NOT json_valid(errors_json)",
    )
    for sql in queries:
        for k, uid in conn.execute(sql):
            found.setdefault(min(k, n_steps - 1), set()).add(uid)
    return {k: sorted(uids) for k, uids in found.items()}


def damaged_run_values(conn: sqlite3.Connection) -> list[str]:
    """Stored values that belong to no unit and cannot be read: the run's options, the data
    of an event, the arguments of a command."""
    problems = []
    if conn.execute("SELECT 1 FROM run WHERE NOT json_valid(options_json)").fetchone():
        problems.append("the run's options are not valid JSON")
    for (event_id,) in conn.execute(
        "SELECT id FROM events WHERE data_json IS NOT NULL AND NOT json_valid(data_json)"
    ):
        problems.append(f"the data of event {event_id} is not valid JSON")
    for (command_id,) in conn.execute("SELECT id FROM commands WHERE NOT json_valid(args_json)"):
        problems.append(f"the arguments of command {command_id} are not valid JSON")
    return problems


def origin_count(conn: sqlite3.Connection, k: int) -> int:
    return int(
        conn.execute(
            "SELECT COUNT(*) FROM units INDEXED BY units_origin WHERE origin_step = ?", (k,)
        ).fetchone()[0]
    )


def verify(
    conn: sqlite3.Connection,
    steps: Sequence[StepDef],
    *,
    runner_live: bool = True,
    deep: bool = True,
) -> VerifyReport:
    """Every check of the module docstring; ``runner_live=False`` reports in-flight units
    outside open batches as stranded; ``deep=False`` skips reading every attempt and stored
    value (no miscounted or corrupt lists)."""
    per_state = counts(conn, len(steps))
    miscounted = miscounted_uids(conn) if deep else {}
    corrupt = corrupt_uids(conn, len(steps)) if deep and steps else {}
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
        stranded = [] if runner_live or not c[UnitStepState.IN_FLIGHT] else stranded_uids(conn, k)
        reports.append(
            StepReport(
                step_idx=k,
                name=step.name,
                # |E| = |R ∩ E| + |E - R| = (|R| - |R - E|) + |E - R|
                expected=rows - len(orphaned) + len(missing),
                valid=c[UnitStepState.VALID],
                retrying=c[UnitStepState.FAILED],
                failed=c[UnitStepState.EXHAUSTED],
                pending=c[UnitStepState.PENDING],
                in_flight=c[UnitStepState.IN_FLIGHT],
                missing=unit_ids(conn, missing),
                duplicated=unit_ids(conn, duplicated_uids(conn, k)),
                orphaned=unit_ids(conn, orphaned),
                miscounted=unit_ids(conn, [uid for uid, _ in miscounted.get(k, [])]),
                stranded=unit_ids(conn, stranded),
                corrupt=unit_ids(conn, corrupt.get(k, [])),
            )
        )
    return VerifyReport(
        reports,
        damaged_run_values(conn) if deep else [],
        totals=totals_problems(conn) if deep else [],
    )
