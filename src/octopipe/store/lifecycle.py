"""The unit state cycle: units enter the ledger, are claimed, succeed or fail, and are retried.

Every change here reads the current states of the units involved, moves each through
:func:`octopipe.core.states.advance` (so an illegal move raises ``IllegalTransition`` before
anything is written) and then writes all of them with one ``executemany`` per table, inside one
transaction. A success writes only the fields the step added (its delta) and creates the unit's
``pending`` row at the next step in the same transaction, so a unit can never fall between two
steps.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from octopipe.core.states import (
    BATCH_TERMINAL,
    UnitStepEvent,
    UnitStepState,
    advance,
    sources,
)
from octopipe.errors import StoreError
from octopipe.store import reads
from octopipe.store.attempt_writes import insert_attempts
from octopipe.store.base import LedgerCore, guarded, marks
from octopipe.store.codec import dumps
from octopipe.store.records import (
    AttemptRecord,
    ClaimedUnit,
    Failure,
    InFlightUnit,
    Json,
    RunnerIdentity,
    Success,
)

_PENDING = UnitStepState.PENDING.value
_IN_FLIGHT = UnitStepState.IN_FLIGHT.value


class UnitLifecycle(LedgerCore):
    """Adding, claiming, recording, releasing and requeueing units."""

    @guarded
    def add_units(
        self,
        units: Iterable[tuple[str, Mapping[str, Any]]],
        *,
        origin_step: int = 0,
        parent_uid: int | None = None,
        batch: int = 5_000,
    ) -> int:
        """Insert ``(unit_id, fields)`` units, pending at ``origin_step``; one transaction per
        ``batch`` units. A duplicate id raises ``StoreError`` naming it (its chunk is rolled
        back; wrap the call in ``transaction()`` for all-or-nothing). Returns the count added.
        """
        if not 0 <= origin_step <= len(self._steps):
            raise ValueError(f"origin_step {origin_step} is not a step of this run")
        if batch < 1:
            raise ValueError("batch must be at least 1")
        total = 0
        it = iter(units)
        while chunk := list(itertools.islice(it, batch)):
            with self.transaction():
                total += len(self._insert_units(chunk, origin_step, parent_uid))
        return total

    @guarded
    def add_children(
        self,
        parent_uid: int,
        step_idx: int,
        children: Iterable[tuple[str, Mapping[str, Any]]],
    ) -> list[int]:
        """Fan-out, atomically: the parent becomes ``valid`` at its fan-out step (delta ``{}``)
        and its children enter at the next step. Returns the children's uids."""
        self._step(step_idx, must_be="fan_out")
        with self.transaction():
            moves = self._moves(step_idx, [(parent_uid, UnitStepEvent.SUCCEED)])
            self._db.execute(
                """UPDATE unit_steps SET state = ?, attempts = attempts + 1, output_json = '{}',
                       last_stage = NULL, last_error = NULL, updated_at = ?
                   WHERE step_idx = ? AND uid = ?""",
                (moves[parent_uid][0].value, self._now(), step_idx, parent_uid),
            )
            self._results_changed()
            return self._insert_units(list(children), step_idx + 1, parent_uid)

    # --- units: the attempt cycle ---------------------------------------------------------

    @guarded
    def register_runner(self, runner: RunnerIdentity) -> None:
        """Record ``runner`` as the one driving the run from now on: every claim this ledger
        makes afterwards carries it, so :meth:`release_in_flight` can release its claims
        alone (a multi-worker run releasing a dead worker's)."""
        with self.transaction():
            self._db.execute(
                """INSERT INTO runners(token, host, pid, started_at) VALUES (?, ?, ?, ?)
                   ON CONFLICT(token) DO NOTHING""",
                (runner.token, runner.host, runner.pid, runner.started_at),
            )
            row = self._db.execute(
                "SELECT id FROM runners WHERE token = ?", (runner.token,)
            ).fetchone()
        self._owner = int(row[0])

    @guarded
    def claim_pending(
        self, step_idx: int, limit: int, *, retries: bool | None = None
    ) -> list[ClaimedUnit]:
        """Move up to ``limit`` pending units of a step (oldest first) to ``in_flight`` and
        return each with its input record. ``retries``: only units with an attempt already
        (``True``), only units without (``False``), or both (``None``)."""
        self._step(step_idx)
        if limit < 0:
            raise ValueError(f"limit must not be negative, not {limit}")
        new = advance(UnitStepState.PENDING, UnitStepEvent.START)
        with self.transaction():
            rows = self._db.execute(
                """SELECT uid, attempts, attempts_base FROM unit_steps INDEXED BY unit_steps_state
                   WHERE step_idx = ? AND state = ?
                     AND (? IS NULL OR (attempts > 0) = ?) ORDER BY uid LIMIT ?""",
                (step_idx, _PENDING, retries, retries, limit),
            ).fetchall()
            uids = [r[0] for r in rows]
            self._db.execute(  # one statement: executemany's per-row binding cost more
                """UPDATE unit_steps SET state = ?, updated_at = ?, claimed_by = ?
                   WHERE step_idx = ? AND uid IN (SELECT value FROM json_each(?))""",
                (new.value, self._now(), self._owner, step_idx, reads.json_ints(uids)),
            )
            inputs = reads.records(self._db, uids, before=step_idx)
        return [
            ClaimedUnit(uid, *inputs[uid], attempt_no=attempts + 1, budget_used=attempts - base)
            for uid, attempts, base in rows
        ]

    @guarded
    def claim_units(self, step_idx: int, uids: Sequence[int]) -> None:
        """Move exactly these pending units of a step to ``in_flight`` without reading their
        records: the caller computed them from records it already holds (read by
        :meth:`peek_pending`, or built in this transaction from the step before). Raises
        ``StoreError``, changing nothing, unless every one of them was pending."""
        self._step(step_idx)
        if len(set(uids)) != len(uids):
            raise ValueError(f"a unit appears twice in one change at step {step_idx}")
        new = advance(UnitStepState.PENDING, UnitStepEvent.START)
        with self.transaction():
            moved = self._db.execute(
                """UPDATE unit_steps SET state = ?, updated_at = ?, claimed_by = ?
                   WHERE step_idx = ? AND state = ? AND uid IN (SELECT value FROM json_each(?))""",
                (new.value, self._now(), self._owner, step_idx, _PENDING, reads.json_ints(uids)),
            ).rowcount
            if moved != len(uids):
                raise StoreError(
                    f"{len(uids) - moved} of {len(uids)} units were no longer pending at step "
                    f"{step_idx} when claimed; is another process writing this run?"
                )

    @guarded
    def peek_pending(self, step_idx: int, limit: int) -> list[ClaimedUnit]:
        """The units :meth:`claim_pending` would claim (oldest first, with their input
        records), read without changing anything: a caller that computes for a while before
        claiming them holds no write lock meanwhile. It must be the run's one writer, so that
        the same units are still pending when it claims them."""
        self._step(step_idx)
        if limit < 0:
            raise ValueError(f"limit must not be negative, not {limit}")
        with self._snapshot():
            rows = self._db.execute(
                """SELECT uid, attempts, attempts_base FROM unit_steps INDEXED BY unit_steps_state
                   WHERE step_idx = ? AND state = ? ORDER BY uid LIMIT ?""",
                (step_idx, _PENDING, limit),
            ).fetchall()
            inputs = reads.records(self._db, [r[0] for r in rows], before=step_idx)
        return [
            ClaimedUnit(uid, *inputs[uid], attempt_no=attempts + 1, budget_used=attempts - base)
            for uid, attempts, base in rows
        ]

    @guarded
    def in_flight_units(self, step_idx: int, uids: Sequence[int]) -> list[ClaimedUnit]:
        """The units among ``uids`` still ``in_flight`` at a step, with their input records,
        without changing anything: what a batch's results are checked against. Units already
        recorded (a collection interrupted half-way and resumed) are left out."""
        with self._snapshot():
            units = self.in_flight(step_idx, uids)
            inputs = reads.records(self._db, [u.uid for u in units], before=step_idx)
        return [ClaimedUnit(u.uid, *inputs[u.uid], u.attempt_no, u.budget_used) for u in units]

    @guarded
    def in_flight(self, step_idx: int, uids: Sequence[int]) -> list[InFlightUnit]:
        """:meth:`in_flight_units` without their input records, read apart by
        :meth:`inputs_of` when needed (checking most answers needs none)."""
        self._step(step_idx)
        if not uids:
            return []
        rows = self._db.execute(
            """SELECT uid, attempts, attempts_base FROM unit_steps
               WHERE step_idx = ? AND state = ? AND uid IN (SELECT value FROM json_each(?))
               ORDER BY uid""",
            (step_idx, _IN_FLIGHT, reads.json_ints(uids)),
        ).fetchall()
        return [InFlightUnit(uid, attempts + 1, attempts - base) for uid, attempts, base in rows]

    @guarded
    def inputs_of(self, step_idx: int, uids: Sequence[int]) -> dict[int, tuple[str, Json]]:
        """``uid -> (unit_id, input record at the step)`` for ``uids``: its fields merged with
        the outputs of its valid earlier steps."""
        self._step(step_idx)
        with self._snapshot():
            return reads.records(self._db, uids, before=step_idx)

    @guarded
    def pending_count(self, step_idx: int, cap: int) -> int:
        """Pending units at a step, counting no further than ``cap`` (cheap at any size)."""
        self._step(step_idx)
        return int(
            self._db.execute(
                """SELECT COUNT(*) FROM (SELECT 1 FROM unit_steps INDEXED BY unit_steps_state
                   WHERE step_idx = ? AND state = ? LIMIT ?)""",
                (step_idx, _PENDING, cap),
            ).fetchone()[0]
        )

    @guarded
    def live_before(self, step_idx: int) -> bool:
        """Whether any earlier step still has units pending or in flight (units that may yet
        reach ``step_idx``)."""
        for k in range(step_idx):
            for state in (_PENDING, _IN_FLIGHT):
                if self._db.execute(
                    """SELECT 1 FROM unit_steps INDEXED BY unit_steps_state
                       WHERE step_idx = ? AND state = ? LIMIT 1""",
                    (k, state),
                ).fetchone():
                    return True
        return False

    def record_success(
        self,
        uid: int,
        step_idx: int,
        delta: Mapping[str, Any],
        attempt: AttemptRecord | None = None,
    ) -> int | None:
        """The unit is ``valid`` at the step, ``delta`` being the fields it added, and pending
        at the next step; returns that step's index (``None`` after the last step)."""
        self.record_successes(step_idx, [Success(uid, delta, attempt)])
        return step_idx + 1 if step_idx + 1 < len(self._steps) else None

    @guarded
    def record_successes(
        self, step_idx: int, items: Iterable[Success], *, claim_next: bool = False
    ) -> int:
        """:meth:`record_success` for many units of one step, in one transaction.
        ``claim_next``: the units enter the next step already claimed (``in_flight``), as
        :meth:`claim_units` would leave them, for a caller that goes on with them at once."""
        self._step(step_idx, must_not_be="fan_out")
        items = list(items)
        if any(s.attempt is not None and s.attempt.outcome != "valid" for s in items):
            raise ValueError("a success must carry a 'valid' attempt (or none)")
        with self.transaction():
            now = self._now()
            moves = self._moves(step_idx, [(s.uid, UnitStepEvent.SUCCEED) for s in items])
            ids = insert_attempts(
                self._db,
                self._where,
                step_idx,
                [(s.uid, moves[s.uid][1] + 1, s.attempt) for s in items if s.attempt],
                now,
            )
            self._db.executemany(
                """UPDATE unit_steps SET state = ?, attempts = attempts + 1, output_json = ?,
                       last_attempt_id = COALESCE(?, last_attempt_id), last_stage = NULL,
                       last_error = NULL, updated_at = ?
                   WHERE step_idx = ? AND uid = ?""",
                [
                    (
                        moves[s.uid][0].value,
                        s.encoded
                        if s.encoded is not None
                        else dumps(
                            dict(s.delta), what=f"output of unit {s.uid} at step {step_idx}"
                        ),
                        ids.get(s.uid),
                        now,
                        step_idx,
                        s.uid,
                    )
                    for s in items
                ],
            )
            self._enter_next_step(step_idx, [s.uid for s in items], now, claimed=claim_next)
            if items:
                self._results_changed()
        return len(items)

    def record_failure(
        self, uid: int, step_idx: int, attempt: AttemptRecord, terminal: bool
    ) -> UnitStepState:
        """A failed attempt: ``failed`` (to be retried) or, if ``terminal``, ``exhausted``."""
        return self.record_failures(step_idx, [Failure(uid, attempt, terminal)])[0]

    @guarded
    def record_failures(self, step_idx: int, items: Iterable[Failure]) -> list[UnitStepState]:
        """:meth:`record_failure` for many units of one step, in one transaction."""
        self._step(step_idx)
        items = list(items)
        if any(f.attempt.outcome == "valid" for f in items):
            raise ValueError("a failure must carry a 'failed' or 'error' attempt")
        with self.transaction():
            now = self._now()
            moves = self._moves(
                step_idx,
                [
                    (
                        f.uid,
                        UnitStepEvent.FAIL_TERMINAL if f.terminal else UnitStepEvent.FAIL_RETRYABLE,
                    )
                    for f in items
                ],
            )
            ids = insert_attempts(
                self._db,
                self._where,
                step_idx,
                [(f.uid, moves[f.uid][1] + 1, f.attempt) for f in items],
                now,
            )
            self._db.executemany(
                """UPDATE unit_steps SET state = ?, attempts = attempts + 1, output_json = NULL,
                       last_attempt_id = ?, last_stage = ?, last_error = ?, updated_at = ?
                   WHERE step_idx = ? AND uid = ?""",
                [
                    (
                        moves[f.uid][0].value,
                        ids[f.uid],
                        f.attempt.stage,
                        dumps(f.attempt.errors, what=f"errors of unit {f.uid}"),
                        now,
                        step_idx,
                        f.uid,
                    )
                    for f in items
                ],
            )
            if items:
                self._results_changed()
        return [moves[f.uid][0] for f in items]

    @guarded
    def record_revalidation(
        self,
        uid: int,
        step_idx: int,
        *,
        delta: Mapping[str, Any] | None,
        stage: str | None = None,
        errors: list[Json] | None = None,
    ) -> UnitStepState:
        """The verdict of re-validating a failed unit's stored response (no API call).

        With a ``delta`` the unit passes: ``valid``, and pending at the next step. Without,
        it keeps its state with the new ``stage``/``errors``. Either way its attempts, request
        and raw response are untouched: an unparseable response is kept, never dropped.
        """
        output = None if delta is None else dumps(dict(delta), what=f"output of unit {uid}")
        passed = output is not None
        event = UnitStepEvent.REVALIDATE_PASS if passed else UnitStepEvent.REVALIDATE_FAIL
        with self.transaction():
            now = self._now()
            new = self._moves(step_idx, [(uid, event)])[uid][0]
            self._db.execute(
                """UPDATE unit_steps SET state = ?, output_json = ?, last_stage = ?,
                       last_error = ?, updated_at = ? WHERE step_idx = ? AND uid = ?""",
                (
                    new.value,
                    output,
                    None if passed else stage,
                    None if passed else dumps(errors or [], what=f"errors of unit {uid}"),
                    now,
                    step_idx,
                    uid,
                ),
            )
            if passed:
                self._enter_next_step(step_idx, [uid], now)
            self._results_changed()
        return new

    @guarded
    def release_in_flight(self, *, owner: str | None = None) -> int:
        """Return every ``in_flight`` unit not held by a live batch to ``pending``; with
        ``owner`` (a runner's token), only the units that runner claimed.

        Called at start-up (a dead runner's realtime calls never finished) and on pause.
        Units of a batch that may still return results stay claimed until the batch is
        collected or abandoned.
        """
        new = advance(UnitStepState.IN_FLIGHT, UnitStepEvent.RELEASE)
        terminal = tuple(s.value for s in BATCH_TERMINAL)
        total = 0
        with self.transaction():
            now = self._now()
            for k in range(len(self._steps)):
                total += self._db.execute(
                    f"""UPDATE unit_steps SET state = ?, updated_at = ?
                        WHERE step_idx = ? AND state = ? AND uid NOT IN (
                            SELECT bu.uid FROM batch_units bu JOIN batches b
                            ON b.id = bu.batch_id
                            WHERE b.step_idx = ? AND b.state NOT IN ({marks(terminal)}))
                          AND (? IS NULL
                               OR claimed_by = (SELECT id FROM runners WHERE token = ?))""",
                    (new.value, now, k, _IN_FLIGHT, k, *terminal, owner, owner),
                ).rowcount
            if total:
                self._event("info", "RECOVER", f"released {total} in-flight unit(s)", None)
        return total

    @guarded
    def release_units(self, step_idx: int, uids: Sequence[int]) -> int:
        """Return these ``in_flight`` units of a step to ``pending`` without using an attempt
        (their call stopped for a reason that was not theirs: auth, quota, a pause)."""
        self._step(step_idx)
        new = advance(UnitStepState.IN_FLIGHT, UnitStepEvent.RELEASE)
        with self.transaction():
            now = self._now()
            return self._db.executemany(
                """UPDATE unit_steps SET state = ?, updated_at = ?
                   WHERE step_idx = ? AND uid = ? AND state = ?""",
                ((new.value, now, step_idx, uid, _IN_FLIGHT) for uid in uids),
            ).rowcount

    @guarded
    def requeue_failed(
        self,
        step_idx: int | None = None,
        stage: str | None = None,
        unit_ids: Iterable[str] | None = None,
        *,
        include_exhausted: bool = True,
        reset_budget: bool = True,
    ) -> int:
        """Move failed (and by default exhausted) units back to ``pending``: only those units.

        Filters combine: a step, the stage of the last failure, explicit unit ids.
        ``reset_budget`` gives each a fresh retry budget (the ``retry`` command); the runner's
        own retry rounds pass ``include_exhausted=False, reset_budget=False``.

        Units of a batch not yet collected stay where they are, even when some of their lines
        were already recorded as failed: a unit goes back to pending only once its batch has
        ended, so it can never be claimed into a second batch (or a realtime call) while the
        first may still deliver or release it.
        """
        states = [
            s.value
            for s in sorted(sources(UnitStepState, UnitStepEvent.RETRY))
            if include_exhausted or s is not UnitStepState.EXHAUSTED
        ]
        new = advance(UnitStepState.FAILED, UnitStepEvent.RETRY)
        if step_idx is not None:
            self._step(step_idx)
        steps = range(len(self._steps)) if step_idx is None else [step_idx]
        ids = None if unit_ids is None else dumps(list(unit_ids), what="unit ids")
        terminal = tuple(s.value for s in BATCH_TERMINAL)
        total = 0
        with self.transaction():
            now = self._now()
            for k in steps:
                total += self._db.execute(
                    f"""UPDATE unit_steps SET state = ?, updated_at = ?,
                            attempts_base = CASE WHEN ? THEN attempts ELSE attempts_base END
                        WHERE step_idx = ? AND state IN ({marks(states)})
                          AND (? IS NULL OR last_stage = ?)
                          AND (? IS NULL OR uid IN (SELECT uid FROM units WHERE unit_id IN
                                                    (SELECT value FROM json_each(?))))
                          AND uid NOT IN (SELECT bu.uid FROM batch_units bu
                                          JOIN batches b ON b.id = bu.batch_id
                                          WHERE b.step_idx = ? AND b.state NOT IN
                                                ({marks(terminal)}))""",
                    (
                        new.value,
                        now,
                        reset_budget,
                        k,
                        *states,
                        stage,
                        stage,
                        ids,
                        ids,
                        k,
                        *terminal,
                    ),
                ).rowcount
            if total:
                self._results_changed()
                self._event(
                    "info",
                    "RETRY",
                    f"requeued {total} failed unit(s)",
                    {"step": step_idx, "stage": stage},
                )
        return total

    # --- internals ------------------------------------------------------------------------

    def _moves(
        self, step_idx: int, wanted: Sequence[tuple[int, UnitStepEvent]]
    ) -> dict[int, tuple[UnitStepState, int]]:
        """``uid -> (new state, attempts so far)`` for each (uid, event), through ``advance``.
        Raises before anything is written if one move is illegal or a unit has no row."""
        uids = [uid for uid, _ in wanted]
        if len(set(uids)) != len(uids):
            raise ValueError(f"a unit appears twice in one change at step {step_idx}")
        current = {
            uid: (UnitStepState(state), attempts)
            for uid, state, attempts in self._db.execute(
                """SELECT uid, state, attempts FROM unit_steps
                   WHERE step_idx = ? AND uid IN (SELECT value FROM json_each(?))""",
                (step_idx, reads.json_ints(uids)),
            )
        }
        moves = {}
        for uid, event in wanted:
            if uid not in current:
                raise StoreError(f"unit {uid} has no row at step {step_idx}")
            state, attempts = current[uid]
            moves[uid] = (advance(state, event), attempts)
        return moves

    def _insert_units(
        self,
        chunk: Sequence[tuple[str, Mapping[str, Any]]],
        origin_step: int,
        parent_uid: int | None,
    ) -> list[int]:
        db, now = self._db, self._now()
        first = db.execute("SELECT COALESCE(MAX(uid), 0) + 1 FROM units").fetchone()[0]
        rows, seen = [], set()
        for i, (unit_id, fields) in enumerate(chunk):
            if not isinstance(unit_id, str) or not unit_id:
                raise StoreError(f"unit ids must be non-empty strings, not {unit_id!r}")
            if unit_id in seen:
                raise StoreError(f"duplicate unit id {unit_id!r}")
            if not isinstance(fields, Mapping):
                raise StoreError(f"unit {unit_id!r}: fields must be a mapping")
            seen.add(unit_id)
            rows.append(
                (
                    first + i,
                    unit_id,
                    parent_uid,
                    origin_step,
                    dumps(fields, what=f"fields of unit {unit_id!r}"),
                )
            )
        try:
            db.executemany(
                """INSERT INTO units(uid, unit_id, parent_uid, origin_step, fields_json)
                   VALUES (?, ?, ?, ?, ?)""",
                rows,
            )
        except sqlite3.IntegrityError as exc:
            if getattr(exc, "sqlite_errorname", "") == "SQLITE_CONSTRAINT_FOREIGNKEY":
                raise StoreError(f"parent unit {parent_uid} does not exist") from None
            dup = db.execute(
                """SELECT unit_id FROM units WHERE uid < ?
                   AND unit_id IN (SELECT value FROM json_each(?)) ORDER BY uid LIMIT 1""",
                (first, dumps([r[1] for r in rows], what="unit ids")),
            ).fetchone()
            name = dup[0] if dup else "?"
            raise StoreError(f"duplicate unit id {name!r}: already in the ledger") from None
        uids = [r[0] for r in rows]
        if origin_step < len(self._steps):
            db.executemany(
                "INSERT INTO unit_steps(uid, step_idx, state, updated_at) VALUES (?, ?, ?, ?)",
                ((uid, origin_step, _PENDING, now) for uid in uids),
            )
        return uids

    def _enter_next_step(
        self, step_idx: int, uids: Sequence[int], now: str, *, claimed: bool = False
    ) -> None:
        nxt = step_idx + 1
        if nxt >= len(self._steps):
            if claimed:
                raise ValueError(f"step {step_idx} is the last step: no next step to claim at")
            return
        state = advance(UnitStepState.PENDING, UnitStepEvent.START).value if claimed else _PENDING
        owner = self._owner if claimed else None  # a claim carries its runner (0004)
        try:
            self._db.executemany(
                "INSERT INTO unit_steps(uid, step_idx, state, updated_at, claimed_by) "
                "VALUES (?, ?, ?, ?, ?)",
                ((uid, nxt, state, now, owner) for uid in uids),
            )
        except sqlite3.IntegrityError:
            raise StoreError(f"a unit already has a row at step {nxt}") from None
