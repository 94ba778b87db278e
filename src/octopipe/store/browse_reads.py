"""Read-only pages of units for browsing a run (the TUI's units table and unit inspector).

Every query here is bounded: a page is at most ``limit`` rows found by a keyset on ``uid``
(never ``OFFSET``, whose cost grows with the page number), through an index:

* all units at a step: the ``(step_idx, uid)`` primary key of ``unit_steps``;
* units in some states at a step: ``unit_steps_state (step_idx, state, uid)``, one range per
  state, merged by SQLite in uid order;
* a search by id: the unique index of ``units.unit_id`` as a prefix range (``unit_id >= p
  AND unit_id < p + U+10FFFF``), so finding ``item04`` among a million units reads only the
  ids that start with it; these pages are in id order, with the last id as the keyset
  (``after_unit_id``).

A filter by failure stage reads ``last_stage`` from the rows of the failed states only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from octopipe.core.states import UnitStepState
from octopipe.store import reads
from octopipe.store.base import LedgerCore, guarded
from octopipe.store.records import Json, UnitAtStep, UnitRow

MAX_PAGE = 1_000
_PREFIX_END = "\U0010ffff"


class BrowseReads(LedgerCore):
    """Pages of units and one unit's rows, read-only (mixed into ``Ledger``)."""

    @guarded
    def unit_page(
        self,
        step_idx: int,
        *,
        states: Sequence[UnitStepState] = (),
        stage: str | None = None,
        prefix: str | None = None,
        after_uid: int = 0,
        after_unit_id: str = "",
        limit: int = 100,
    ) -> list[UnitRow]:
        """The next ``limit`` units (uid order, uid > ``after_uid``) at a step in ``states``
        (any when empty), whose last failure ``stage`` is the one given, whose id starts with
        ``prefix``."""
        self._step(step_idx)
        limit = max(1, min(limit, MAX_PAGE))
        if prefix:
            return _prefix_page(
                self._db,
                step_idx,
                tuple(s.value for s in states),
                stage,
                prefix,
                after_unit_id,
                limit,
            )
        return _unit_page(
            self._db, step_idx, tuple(s.value for s in states), stage, None, after_uid, limit
        )

    @guarded
    def failed_by_stage(self) -> dict[int, dict[str, int]]:
        """Units with no attempt left (``exhausted``) by step and by the stage that failed
        them: one indexed range per step."""
        out: dict[int, dict[str, int]] = {}
        for step_idx, stage, count in self._db.execute(
            """SELECT step_idx, COALESCE(last_stage, 'unknown'), COUNT(*) FROM unit_steps
               INDEXED BY unit_steps_state
               WHERE step_idx IN (SELECT idx FROM steps) AND state = ?
               GROUP BY step_idx, 2""",
            (UnitStepState.EXHAUSTED.value,),
        ):
            out.setdefault(step_idx, {})[stage] = count
        return out

    @guarded
    def unit_fields(self, unit_id: str) -> tuple[int, Json] | None:
        """``(uid, fields)`` of a unit (its input at its origin step), ``None`` if unknown."""
        row = self._db.execute(
            "SELECT uid, fields_json FROM units WHERE unit_id = ?", (unit_id,)
        ).fetchone()
        if row is None:
            return None
        return int(row[0]), reads.unit_json(self._db, row[1], row[0], "fields")

    @guarded
    def unit_at_steps(self, uid: int) -> list[UnitAtStep]:
        """The unit's row at every step where it has one, with its input record there."""
        rows = self._db.execute(
            """SELECT step_idx, state, attempts, last_stage, last_error, output_json
               FROM unit_steps WHERE step_idx IN (SELECT idx FROM steps) AND uid = ?
               ORDER BY step_idx""",
            (uid,),
        ).fetchall()
        out = []
        for step_idx, state, attempts, stage, error, output in rows:
            record = reads.records(self._db, [uid], before=step_idx).get(uid, ("", {}))[1]
            value = (
                reads.unit_json(self._db, output, uid, "output", step_idx)
                if output is not None
                else None
            )
            out.append(
                UnitAtStep(step_idx, UnitStepState(state), attempts, stage, error, record, value)
            )
        return out


def _unit_page(
    conn: sqlite3.Connection,
    step_idx: int,
    states: tuple[str, ...],
    stage: str | None,
    prefix: str | None,
    after_uid: int,
    limit: int,
) -> list[UnitRow]:
    if len(states) > 1 and not prefix:
        # One index range per state, merged here: SQLite would otherwise read every row of
        # the states and sort them to find the first ``limit``.
        rows = [
            row
            for state in states
            for row in _unit_page(conn, step_idx, (state,), stage, None, after_uid, limit)
        ]
        return sorted(rows, key=lambda r: r.uid)[:limit]
    where = ["s.step_idx = ?", "s.uid > ?"]
    args: list[object] = [step_idx, after_uid]
    if states:
        where.append(f"s.state IN ({','.join('?' * len(states))})")
        args += states
    if stage is not None:
        where.append("s.last_stage = ?")
        args.append(stage)
    index = "INDEXED BY unit_steps_state" if states else ""
    sql = f"""SELECT {COLUMNS} FROM unit_steps s {index} JOIN units u ON u.uid = s.uid
              WHERE {" AND ".join(where)} ORDER BY s.uid LIMIT ?"""
    args.append(limit)
    return _rows(conn, sql, args)


def _prefix_page(
    conn: sqlite3.Connection,
    step_idx: int,
    states: tuple[str, ...],
    stage: str | None,
    prefix: str,
    after_unit_id: str,
    limit: int,
) -> list[UnitRow]:
    """Units whose id starts with ``prefix``, in id order: a range of the unit_id index
    (``CROSS JOIN`` keeps it the outer loop), one primary-key seek per unit."""
    where = ["u.unit_id >= ?", "u.unit_id < ?", "u.unit_id > ?", "s.step_idx = ?"]
    args: list[object] = [prefix, prefix + _PREFIX_END, after_unit_id, step_idx]
    if states:
        where.append(f"s.state IN ({','.join('?' * len(states))})")
        args += states
    if stage is not None:
        where.append("s.last_stage = ?")
        args.append(stage)
    sql = f"""SELECT {COLUMNS} FROM units u CROSS JOIN unit_steps s ON s.uid = u.uid
              WHERE {" AND ".join(where)} ORDER BY u.unit_id LIMIT ?"""
    return _rows(conn, sql, [*args, limit])


COLUMNS = "s.uid, u.unit_id, s.state, s.attempts, s.last_stage, s.last_error, s.updated_at"


def _rows(conn: sqlite3.Connection, sql: str, args: Sequence[object]) -> list[UnitRow]:
    return [
        UnitRow(uid, unit_id, UnitStepState(state), attempts, last_stage, error, updated)
        for uid, unit_id, state, attempts, last_stage, error, updated in conn.execute(sql, args)
    ]
