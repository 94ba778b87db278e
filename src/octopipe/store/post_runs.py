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
from collections.abc import Sequence

from octopipe.errors import StoreError
from octopipe.store.base import LedgerCore, guarded
from octopipe.store.codec import dumps
from octopipe.store.records import PostKind, PostOutcome, PostRunRow

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
