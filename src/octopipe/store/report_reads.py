"""Read-only aggregate queries behind ``octopipe report`` and ``octopipe compare``.

Every figure of a report is one of these queries: set-based SQL over indexes, never a loop
over units in Python, so a report on a million units costs about what ``status`` does.

* ``attempt_groups``: one pass over the covering index ``attempts_by_step`` (migration
  ``0003_attempts_by_step``), grouped in its own order -- step, outcome, attempt number,
  mode, provider, model -- with the sums of tokens and of known costs and the count of
  attempts priced. No sort, no read of the table.
* ``units_retried``: distinct units with an attempt numbered above 1, per step (three ranges
  of the same index, which holds the uid).
* ``stage_counts``: units retrying / failed at a step by the stage of their last verdict
  (the ``unit_steps_state`` index range of those two states).
* ``error_texts``: a step's failures grouped by their stored errors as they are (text), with
  a count and the first and last uid of each; ``engine/report.py`` turns the texts into error keys
  (``core.error_text``). Two sources: the units failing *now* (their last verdict, which
  ``revalidate`` may have rewritten) and every failed *attempt* (history, including attempts
  that a later retry made good).
* ``failure_groups``: units at a step by the value of one field of their record there (the
  unit's fields merged with the outputs of its valid earlier steps, a later step winning),
  and by state: which categories fail most. This one reads every unit of the step.
* ``children_of``, ``sample_fields``: a fan-out's children; the field names of a record.

Without the index (a ledger made before it, opened read-only) every query still answers,
the same, only slower.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

from octopipe.core.states import UnitStepState
from octopipe.store.reads import json_ints
from octopipe.store.records import AttemptGroup, ErrorText, ValueGroup


class _Reading(Protocol):
    """What the report's reads need of an open ledger (``store.ledger.Ledger``, named
    structurally: the ledger hands out these reads)."""

    @property
    def steps(self) -> Sequence[Any]: ...

    def _read(self, fn: Any, *args: Any, **kwargs: Any) -> Any: ...


__all__ = ["AttemptGroup", "ErrorText", "ReportReads", "ValueGroup"]

_FAILED = UnitStepState.FAILED.value
_EXHAUSTED = UnitStepState.EXHAUSTED.value
_VALID = UnitStepState.VALID.value


ATTEMPT_GROUPS = """
    SELECT step_idx, outcome, attempt_no, mode, provider, model, COUNT(*),
           TOTAL(input_tokens), TOTAL(output_tokens), TOTAL(cached_tokens),
           TOTAL(cost_usd), COUNT(cost_usd)
    FROM attempts
    GROUP BY step_idx, outcome, attempt_no, mode, provider, model
"""
UNITS_RETRIED = """
    SELECT COUNT(DISTINCT uid) FROM attempts
    WHERE step_idx = :k AND outcome IN ('valid', 'failed', 'error') AND attempt_no > 1
"""
STAGE_COUNTS = """
    SELECT state, last_stage, COUNT(*) FROM unit_steps INDEXED BY unit_steps_state
    WHERE step_idx = :k AND state IN (:failed, :exhausted) GROUP BY state, last_stage
"""


def attempt_groups(conn: sqlite3.Connection) -> list[AttemptGroup]:
    return [AttemptGroup(*row) for row in conn.execute(ATTEMPT_GROUPS)]


def units_retried(conn: sqlite3.Connection, n_steps: int) -> dict[int, int]:
    """Units with an attempt numbered above 1, per step (three index ranges each)."""
    out = {}
    for k in range(n_steps):
        (n,) = conn.execute(UNITS_RETRIED, {"k": k}).fetchone()
        if n:
            out[k] = int(n)
    return out


def stage_counts(conn: sqlite3.Connection, step_idx: int) -> list[tuple[str, str | None, int]]:
    """``(state, last stage, units)`` of the units retrying or failed at a step."""
    return [
        (state, stage, int(n))
        for state, stage, n in conn.execute(
            STAGE_COUNTS, {"k": step_idx, "failed": _FAILED, "exhausted": _EXHAUSTED}
        )
    ]


def children_of(conn: sqlite3.Connection, step_idx: int) -> int:
    """Units a fan-out step made (their origin is the step after it)."""
    row = conn.execute(
        "SELECT COUNT(*) FROM units INDEXED BY units_origin WHERE origin_step = ?",
        (step_idx + 1,),
    ).fetchone()
    return int(row[0])


_ERROR_TEXTS = """
    SELECT {stage}, {errors}, COUNT(*), MIN(uid), MAX(uid)
    FROM {table} WHERE step_idx = :k AND {where}
    GROUP BY {stage}, {errors}
"""
NOW_FAILING = _ERROR_TEXTS.format(
    stage="last_stage",
    errors="last_error",
    table="unit_steps INDEXED BY unit_steps_state",
    where="state IN (:failed, :exhausted)",
)
FAILED_ATTEMPTS = _ERROR_TEXTS.format(
    stage="stage", errors="errors_json", table="attempts", where="outcome IN ('failed', 'error')"
)


def error_texts(
    conn: sqlite3.Connection, step_idx: int, *, attempts: bool = False
) -> list[ErrorText]:
    """The failures of a step by (stage, stored errors): of the units failing now (their last
    verdict; ``n`` = units), or of every failed attempt (``n`` = attempts); with the first
    and the last uid of each, and the errors parsed (``None`` when unreadable)."""
    rows = conn.execute(
        FAILED_ATTEMPTS if attempts else NOW_FAILING,
        {"k": step_idx, "failed": _FAILED, "exhausted": _EXHAUSTED},
    ).fetchall()
    names = _unit_ids(conn, sorted({uid for r in rows for uid in r[3:]}))
    return [
        ErrorText(
            stage, text, _parsed(text), int(n), sorted({(u, names[u]) for u in (first, last)})
        )
        for stage, text, n, first, last in rows
    ]


def _parsed(text: str | None) -> Any:
    try:
        return None if text is None else json.loads(text)
    except ValueError:
        return None


def _unit_ids(conn: sqlite3.Connection, uids: list[int]) -> dict[int, str]:
    return dict(
        conn.execute(
            "SELECT uid, unit_id FROM units WHERE uid IN (SELECT value FROM json_each(?))",
            (json_ints(uids),),
        )
    )


def failure_groups(conn: sqlite3.Connection, step_idx: int, field: str) -> list[ValueGroup]:
    """Units at ``step_idx`` by (value of ``field`` in their record there, state)."""
    path = json_path(field)
    joins = "".join(
        f" LEFT JOIN unit_steps d{j} ON d{j}.step_idx = {j} AND d{j}.uid = s.uid"
        f" AND d{j}.state = :valid"
        for j in range(step_idx)
    )
    # A later step's output wins over an earlier one, and any output over the unit's fields.
    picks = "".join(
        f" WHEN d{j}.output_json -> :path IS NOT NULL THEN d{j}.output_json -> :path"
        for j in reversed(range(step_idx))
    )
    value = f"CASE{picks} ELSE u.fields_json -> :path END" if picks else "u.fields_json -> :path"
    sql = f"""SELECT value, state, COUNT(*) FROM (
                  SELECT {value} AS value, s.state AS state
                  FROM unit_steps s JOIN units u ON u.uid = s.uid{joins}
                  WHERE s.step_idx = :k)
              GROUP BY value, state"""
    return [
        ValueGroup(value, state, int(n))
        for value, state, n in conn.execute(sql, {"k": step_idx, "path": path, "valid": _VALID})
    ]


def json_path(field: str) -> str:
    """``$."field"``: the field as one key, whatever characters it holds (except ``"``)."""
    return '$."' + field + '"'


def sample_fields(conn: sqlite3.Connection) -> list[str]:
    """Field names of the first unit's record at the last step it reached (for messages)."""
    names: dict[str, None] = {}
    row = conn.execute("SELECT uid, fields_json FROM units ORDER BY uid LIMIT 1").fetchone()
    if row is None:
        return []
    texts = [row[1]] + [
        r[0]
        for r in conn.execute(
            """SELECT output_json FROM unit_steps WHERE step_idx IN (SELECT idx FROM steps)
               AND uid = ? AND state = ? AND output_json IS NOT NULL ORDER BY step_idx""",
            (row[0], _VALID),
        )
    ]
    for text in texts:
        for (key,) in conn.execute(
            "SELECT key FROM json_each(?) WHERE json_valid(?) AND json_type(?) = 'object'",
            (text, text, text),
        ):
            names.setdefault(str(key), None)
    return list(names)


class ReportReads:
    """The queries above on one open ledger (read-only use; serialised like its other reads)."""

    def __init__(self, ledger: _Reading) -> None:
        self._ledger = ledger

    def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self._ledger._read(fn, *args, **kwargs)

    def attempt_groups(self) -> list[AttemptGroup]:
        return list(self._run(attempt_groups))

    def units_retried(self) -> dict[int, int]:
        return dict(self._run(units_retried, len(self._ledger.steps)))

    def stage_counts(self, step_idx: int) -> list[tuple[str, str | None, int]]:
        return list(self._run(stage_counts, step_idx))

    def children_of(self, step_idx: int) -> int:
        return int(self._run(children_of, step_idx))

    def error_texts(self, step_idx: int, *, attempts: bool = False) -> list[ErrorText]:
        return list(self._run(error_texts, step_idx, attempts=attempts))

    def failure_groups(self, step_idx: int, field: str) -> list[ValueGroup]:
        return list(self._run(failure_groups, step_idx, field))

    def sample_fields(self) -> list[str]:
        return list(self._run(sample_fields))
