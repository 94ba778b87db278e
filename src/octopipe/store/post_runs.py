"""Post-processing in the ledger: what ran after the run completed, when, how it ended.

Each action of a pipeline's post-processing (``post_process`` entries and run-scope steps) is
recorded when it starts (``running``) and again when it ends (``ok`` or ``failed``, with the
exit code and a detail), or once as ``skipped`` (folder code the user did not allow, with the
command that would have run). Rows are history: a re-run adds rows, never rewrites old ones;
:meth:`PostRuns.post_runs` gives the latest row of each action. Every row keeps the results
version it was computed from, so a stale output is known without reading the records.
"""

from __future__ import annotations

import json
import sqlite3
from array import array
from collections.abc import Iterator, Sequence

from octopipe.core.states import UnitStepState
from octopipe.errors import StoreError
from octopipe.store import reads
from octopipe.store.base import LedgerCore, guarded
from octopipe.store.codec import dumps, get_blob
from octopipe.store.records import FailedAttempt, Json, PostKind, PostOutcome, PostRunRow

PAGE = 2_000

_COLUMNS = """id, position, action, name, kind, command_json, output, results_version,
              started_at, finished_at, outcome, exit_code, detail"""
FINISHED: tuple[PostOutcome, ...] = ("ok", "failed")


class PostRuns(LedgerCore):
    """The ``post_runs`` table (migration ``0002_post_runs``)."""

    @guarded
    def start_post_run(
        self,
        position: int,
        action: str,
        name: str,
        kind: PostKind,
        command: Sequence[str],
        output: str | None,
        results_version: int,
        *,
        outcome: PostOutcome = "running",
        detail: str | None = None,
    ) -> int:
        """Record that an action starts (or, with ``outcome="skipped"``, that it was not run
        and why); returns the row id."""
        if outcome not in ("running", "skipped"):
            raise ValueError(f"a post run starts as running or skipped, not {outcome!r}")
        with self.transaction():
            now = self._now()
            cur = self._db.execute(
                """INSERT INTO post_runs(position, action, name, kind, command_json, output,
                       results_version, started_at, finished_at, outcome, detail)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    position,
                    action,
                    name,
                    kind,
                    dumps(list(command), what=f"the command of {action}"),
                    output,
                    results_version,
                    now,
                    now if outcome == "skipped" else None,
                    outcome,
                    detail,
                ),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    @guarded
    def finish_post_run(
        self, row_id: int, outcome: PostOutcome, exit_code: int | None, detail: str | None
    ) -> None:
        """Record how a started action ended (only a ``running`` row can end)."""
        if outcome not in FINISHED:
            raise ValueError(f"a post run ends ok or failed, not {outcome!r}")
        with self.transaction():
            cur = self._db.execute(
                """UPDATE post_runs SET outcome = ?, exit_code = ?, detail = ?, finished_at = ?
                   WHERE id = ? AND outcome = 'running'""",
                (outcome, exit_code, detail, self._now(), row_id),
            )
            if cur.rowcount != 1:
                raise StoreError(f"post run #{row_id} is not running in ledger {self._where}")

    @guarded
    def post_runs(self) -> list[PostRunRow]:
        """The latest row of every action, in plan order."""
        rows = self._db.execute(
            f"""SELECT {_COLUMNS} FROM post_runs
                WHERE id IN (SELECT MAX(id) FROM post_runs GROUP BY action)
                ORDER BY position, id"""
        ).fetchall()
        return [_row(r) for r in rows]

    @guarded
    def post_history(self, action: str) -> list[PostRunRow]:
        """Every row of one action, oldest first."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM post_runs WHERE action = ? ORDER BY id", (action,)
        ).fetchall()
        return [_row(r) for r in rows]


def _row(r: Sequence[object]) -> PostRunRow:
    try:
        command = json.loads(str(r[5]))
    except ValueError:
        command = [str(r[5])]
    return PostRunRow(
        id=int(r[0]),  # type: ignore[call-overload]
        position=int(r[1]),  # type: ignore[call-overload]
        action=str(r[2]),
        name=str(r[3]),
        kind=str(r[4]),  # type: ignore[arg-type]
        command=command if isinstance(command, list) else [str(command)],
        output=None if r[6] is None else str(r[6]),
        results_version=int(r[7]),  # type: ignore[call-overload]
        started_at=str(r[8]),
        finished_at=None if r[9] is None else str(r[9]),
        outcome=str(r[10]),  # type: ignore[arg-type]
        exit_code=None if r[11] is None else int(r[11]),  # type: ignore[call-overload]
        detail=None if r[12] is None else str(r[12]),
    )


# --- what the Octobatch-compatible view reads --------------------------------------------------


class ViewReads(LedgerCore):
    """Streams in unit order for ``engine/octobatch_view.py`` (page by page, never the whole
    run in memory)."""

    @guarded
    def unit_uids(self) -> array[int]:
        """Every unit's uid in order (8 bytes a unit): a unit's rank is its index here."""
        uids: array[int] = array("q")
        after = 0
        while rows := self._db.execute(
            "SELECT uid FROM units WHERE uid > ? ORDER BY uid LIMIT ?", (after, PAGE)
        ).fetchall():
            uids.extend(r[0] for r in rows)
            after = rows[-1][0]
        return uids

    def iter_units(self) -> Iterator[tuple[int, str, Json]]:
        """``(uid, unit_id, fields)`` of every unit (its input at its origin step)."""
        after = 0
        while rows := self._read(_units_page, after):
            yield from rows
            after = rows[-1][0]

    def iter_valid_with_uid(self, step_idx: int) -> Iterator[tuple[int, str, Json]]:
        """``(uid, unit_id, record)`` of every unit valid at a step, in uid order."""
        self._step(step_idx)
        after = 0
        while page := self._read(reads.page, step_idx, (UnitStepState.VALID.value,), after, PAGE):
            inputs = self._read(reads.records, page, before=step_idx + 1)
            yield from ((uid, *inputs[uid]) for uid in page)
            after = page[-1]

    def iter_failed_attempts(self, step_idx: int) -> Iterator[FailedAttempt]:
        """Every attempt at a step that was not valid, in (uid, attempt) order."""
        self._step(step_idx)
        after = (0, 0)
        while rows := self._read(_failed_page, step_idx, after):
            inputs = self._read(reads.records, sorted({r[0] for r in rows}), before=step_idx)
            for uid, attempt_no, stage, errors, response in rows:
                unit_id, record = inputs[uid]
                yield FailedAttempt(
                    uid,
                    unit_id,
                    attempt_no,
                    stage,
                    reads.unit_json(self._db, errors, uid, "errors", step_idx) or [],
                    response,
                    record,
                )
            after = (rows[-1][0], rows[-1][1])


def _units_page(conn: sqlite3.Connection, after: int) -> list[tuple[int, str, Json]]:
    rows = conn.execute(
        "SELECT uid, unit_id, fields_json FROM units WHERE uid > ? ORDER BY uid LIMIT ?",
        (after, PAGE),
    ).fetchall()
    return [(uid, unit_id, reads.unit_json(conn, f, uid, "fields")) for uid, unit_id, f in rows]


def _failed_page(
    conn: sqlite3.Connection, step_idx: int, after: tuple[int, int]
) -> list[tuple[int, int, str | None, str, str | None]]:
    rows = conn.execute(
        """SELECT uid, attempt_no, stage, errors_json, response_blob FROM attempts
           WHERE step_idx = ? AND outcome != 'valid' AND (uid, attempt_no) > (?, ?)
           ORDER BY uid, attempt_no LIMIT ?""",
        (step_idx, after[0], after[1], PAGE),
    ).fetchall()
    return [
        (uid, no, stage, errors, None if blob is None else get_blob(conn, blob))
        for uid, no, stage, errors, blob in rows
    ]
