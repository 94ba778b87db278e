"""The run ledger: every unit, its state at every step, every attempt, batch, event and command.

Guarantees:

* **One transaction per change.** Every public method that writes runs inside
  :meth:`Ledger.transaction`; an exception anywhere inside leaves nothing behind. Calls nest: a
  method called inside an outer ``with ledger.transaction():`` becomes a savepoint of it, so
  the engine can group many changes into one commit and still recover from one failing.
* **States move only through** :func:`octopipe.core.states.advance`: a change reads the
  current states, advances each in Python (raising ``IllegalTransition`` on a move the table
  lacks) and writes the results; bulk updates select exactly the states the table allows.
* **Nothing is dropped.** Attempts (request, raw response, usage, cost, errors) are
  append-only; revalidation and retry change a unit's current state, never its history.
* **Streaming.** Bulk inserts are chunked; iterators page through the tables by uid.
* **Errors.** SQLite failures surface as ``StoreError`` naming the file and the reason.

A ``Ledger`` may be shared between threads (calls are serialised by a lock), but a run has one
writing process: the one holding :class:`octopipe.store.lock.RunLock`. Other processes open it
read-only, or read-write only to queue a command.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from octopipe.core.states import (
    BATCH_TERMINAL,
    BatchEvent,
    BatchState,
    CommandEvent,
    CommandState,
    RunEvent,
    RunStatus,
    UnitStepEvent,
    UnitStepState,
    advance,
    sources,
)
from octopipe.errors import StoreError
from octopipe.store import batches as batch_sql
from octopipe.store import integrity, reads
from octopipe.store.codec import Clock, dumps, get_blob, loads, put_blob, utc_now
from octopipe.store.connection import connect, store_error
from octopipe.store.records import (
    AttemptRecord,
    AttemptRow,
    BatchRow,
    ClaimedUnit,
    CommandRow,
    CostTotals,
    EventRow,
    Failure,
    FailureRow,
    Json,
    Level,
    RunInfo,
    RunMeta,
    StepDef,
    Success,
    VerifyReport,
)
from octopipe.store.schema import check_file, check_version, migrate

P = ParamSpec("P")
R = TypeVar("R")

PAGE = 2_000
_PENDING = UnitStepState.PENDING.value
_IN_FLIGHT = UnitStepState.IN_FLIGHT.value
_VALID = UnitStepState.VALID.value
_LEVELS = ("debug", "info", "warning", "error")
_UNIT_SCOPES = ("chunk", "expression", "fan_out")


def _guarded(method: Callable[Concatenate[Ledger, P], R]) -> Callable[Concatenate[Ledger, P], R]:
    """Serialise the call and turn SQLite errors into ``StoreError``."""

    @functools.wraps(method)
    def wrapper(self: Ledger, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise store_error(exc, self._where) from exc

    return wrapper


class Ledger:
    """One run's ledger. Build with :meth:`create`, :meth:`open` or :meth:`in_memory`."""

    def __init__(
        self, conn: sqlite3.Connection, where: str, *, readonly: bool, clock: Clock
    ) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._where = where
        self._readonly = readonly
        self._now = clock
        self._lock = threading.RLock()
        self._depth = 0
        self._steps = tuple(
            StepDef(name, scope)
            for name, scope in conn.execute("SELECT name, scope FROM steps ORDER BY idx")
        )
        if conn.execute("SELECT COUNT(*) FROM run").fetchone()[0] != 1:
            raise StoreError(f"run ledger {where} has no run record: the file is incomplete")

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        run_meta: RunMeta,
        steps: Sequence[StepDef],
        *,
        clock: Clock = utc_now,
    ) -> Ledger:
        """Create a new ledger file atomically: it appears complete or not at all."""
        path = Path(path)
        if path.exists():
            raise StoreError(f"a run ledger already exists at {path}")
        if not path.parent.is_dir():
            raise StoreError(f"cannot create run ledger {path}: {path.parent} is not a directory")
        _check_steps(steps)
        tmp = path.with_name(path.name + ".creating")
        for leftover in (tmp, *_sidecars(tmp)):
            leftover.unlink(missing_ok=True)
        try:
            conn = connect(tmp)
            try:
                _initialise(conn, run_meta, steps, clock())
            finally:
                conn.close()  # checkpoints and removes the WAL
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except sqlite3.Error as exc:
            raise store_error(exc, str(path)) from exc
        return cls.open(path, clock=clock)

    @classmethod
    def in_memory(
        cls, run_meta: RunMeta, steps: Sequence[StepDef], *, clock: Clock = utc_now
    ) -> Ledger:
        """A private in-memory ledger with the same schema (tests, dry runs)."""
        _check_steps(steps)
        conn = connect(None)
        _initialise(conn, run_meta, steps, clock())
        return cls(conn, ":memory:", readonly=False, clock=clock)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        durable: bool = False,
        clock: Clock = utc_now,
    ) -> Ledger:
        """Open an existing ledger, upgrading its schema unless ``readonly``.

        ``durable=True`` makes every commit wait for the disk (``synchronous=FULL``).
        """
        path = Path(path)
        wal = _sidecars(path)[0]
        if not path.exists():
            raise StoreError(f"no run ledger at {path}")
        if not (wal.exists() and wal.stat().st_size):
            check_file(path)  # with a non-empty WAL beside it, SQLite reconciles the two
        conn: sqlite3.Connection | None = None
        try:
            conn = connect(path, readonly=readonly, durable=durable)
            todo = check_version(conn, str(path))
            if todo and readonly:
                raise StoreError(
                    f"run ledger {path} uses an older schema (needs {', '.join(todo)}); "
                    "open it once read-write (for example by resuming the run) to upgrade it"
                )
            if todo:
                migrate(conn, clock())
            return cls(conn, str(path), readonly=readonly, clock=clock)
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.Error):
                raise store_error(exc, str(path)) from exc
            raise

    def close(self) -> None:
        with self._lock:
            if self._conn is None:
                return
            conn, self._conn = self._conn, None
            with contextlib.suppress(sqlite3.Error):
                if not self._readonly:
                    conn.execute("PRAGMA optimize")
            conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def steps(self) -> tuple[StepDef, ...]:
        return self._steps

    @property
    def path(self) -> str:
        return self._where

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"run ledger {self._where} is closed")
        return self._conn

    # --- transactions ---------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic change. Nested uses become savepoints of the outermost one."""
        with self._lock:
            if self._readonly:
                raise StoreError(f"run ledger {self._where} was opened read-only")
            db = self._db
            savepoint = f"sp{self._depth}" if self._depth else None
            try:
                db.execute(f"SAVEPOINT {savepoint}" if savepoint else "BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise store_error(exc, self._where) from exc
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                with contextlib.suppress(sqlite3.Error):
                    if savepoint:
                        db.execute(f"ROLLBACK TO {savepoint}")
                        db.execute(f"RELEASE {savepoint}")
                    else:
                        db.execute("ROLLBACK")
                raise
            self._depth -= 1
            try:
                db.execute(f"RELEASE {savepoint}" if savepoint else "COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    if not savepoint and db.in_transaction:
                        db.execute("ROLLBACK")
                raise store_error(exc, self._where) from exc

    # --- the run --------------------------------------------------------------------------

    @_guarded
    def run_info(self) -> RunInfo:
        r = self._db.execute(
            """SELECT name, display_name, pipeline_name, status, status_reason, mode, provider,
                      model, created_at, updated_at, started_at, finished_at, max_units, repeat,
                      options_json FROM run WHERE id = 1"""
        ).fetchone()
        return RunInfo(
            name=r[0], display_name=r[1], pipeline_name=r[2], status=RunStatus(r[3]),
            status_reason=r[4], mode=r[5], provider=r[6], model=r[7], created_at=r[8],
            updated_at=r[9], started_at=r[10], finished_at=r[11], max_units=r[12],
            repeat=r[13], options=loads(r[14]), steps=self._steps,
        )  # fmt: skip

    @_guarded
    def set_run_status(self, event: RunEvent, reason: str | None = None) -> RunStatus:
        """Move the run's status by ``event``; ``reason`` says why (pause, failure, kill)."""
        with self.transaction():
            now = self._now()
            old = RunStatus(self._db.execute("SELECT status FROM run").fetchone()[0])
            new = advance(old, event)
            finished = new in (RunStatus.COMPLETE, RunStatus.FAILED, RunStatus.KILLED)
            self._db.execute(
                """UPDATE run SET status = :new, status_reason = :reason, updated_at = :now,
                       started_at = CASE WHEN :running THEN COALESCE(started_at, :now)
                                         ELSE started_at END,
                       finished_at = CASE WHEN :finished THEN :now ELSE NULL END
                   WHERE id = 1""",
                {"new": new.value, "reason": reason, "now": now,
                 "running": new is RunStatus.RUNNING, "finished": finished},
            )  # fmt: skip
            self._event("info", "STATE", f"run {old} -> {new} on {event}", {"reason": reason})
        return new

    @_guarded
    def update_run(
        self,
        *,
        display_name: str | None = None,
        mode: str | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        """Change descriptive fields (a rename, a mode switch). ``None`` keeps a field."""
        if mode is not None and mode not in ("batch", "realtime"):
            raise ValueError(f"mode must be 'batch' or 'realtime', not {mode!r}")
        with self.transaction():
            self._db.execute(
                """UPDATE run SET display_name = COALESCE(?, display_name),
                       mode = COALESCE(?, mode), provider = COALESCE(?, provider),
                       model = COALESCE(?, model), updated_at = ? WHERE id = 1""",
                (display_name, mode, provider, model, self._now()),
            )

    # --- units: creation ------------------------------------------------------------------

    @_guarded
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

    @_guarded
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
            return self._insert_units(list(children), step_idx + 1, parent_uid)

    # --- units: the attempt cycle ---------------------------------------------------------

    @_guarded
    def claim_pending(self, step_idx: int, limit: int) -> list[ClaimedUnit]:
        """Move up to ``limit`` pending units of a step (oldest first) to ``in_flight`` and
        return each with its input record."""
        self._step(step_idx)
        new = advance(UnitStepState.PENDING, UnitStepEvent.START)
        with self.transaction():
            rows = self._db.execute(
                """SELECT uid, attempts, attempts_base FROM unit_steps INDEXED BY unit_steps_state
                   WHERE step_idx = ? AND state = ? ORDER BY uid LIMIT ?""",
                (step_idx, _PENDING, limit),
            ).fetchall()
            now = self._now()
            self._db.executemany(
                "UPDATE unit_steps SET state = ?, updated_at = ? WHERE step_idx = ? AND uid = ?",
                ((new.value, now, step_idx, uid) for uid, _, _ in rows),
            )
            inputs = reads.records(self._db, [r[0] for r in rows], before=step_idx)
        return [
            ClaimedUnit(uid, *inputs[uid], attempt_no=attempts + 1, budget_used=attempts - base)
            for uid, attempts, base in rows
        ]

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

    @_guarded
    def record_successes(self, step_idx: int, items: Iterable[Success]) -> int:
        """:meth:`record_success` for many units of one step, in one transaction."""
        self._step(step_idx, must_not_be="fan_out")
        items = list(items)
        if any(s.attempt is not None and s.attempt.outcome != "valid" for s in items):
            raise ValueError("a success must carry a 'valid' attempt (or none)")
        with self.transaction():
            now = self._now()
            moves = self._moves(step_idx, [(s.uid, UnitStepEvent.SUCCEED) for s in items])
            ids = self._insert_attempts(
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
                    (moves[s.uid][0].value,
                     dumps(dict(s.delta), what=f"output of unit {s.uid} at step {step_idx}"),
                     ids.get(s.uid), now, step_idx, s.uid)
                    for s in items
                ],
            )  # fmt: skip
            self._enter_next_step(step_idx, [s.uid for s in items], now)
        return len(items)

    def record_failure(
        self, uid: int, step_idx: int, attempt: AttemptRecord, terminal: bool
    ) -> UnitStepState:
        """A failed attempt: ``failed`` (to be retried) or, if ``terminal``, ``exhausted``."""
        return self.record_failures(step_idx, [Failure(uid, attempt, terminal)])[0]

    @_guarded
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
                [(f.uid, UnitStepEvent.FAIL_TERMINAL if f.terminal
                  else UnitStepEvent.FAIL_RETRYABLE) for f in items],
            )  # fmt: skip
            ids = self._insert_attempts(
                step_idx, [(f.uid, moves[f.uid][1] + 1, f.attempt) for f in items], now
            )
            self._db.executemany(
                """UPDATE unit_steps SET state = ?, attempts = attempts + 1, output_json = NULL,
                       last_attempt_id = ?, last_stage = ?, last_error = ?, updated_at = ?
                   WHERE step_idx = ? AND uid = ?""",
                [
                    (moves[f.uid][0].value, ids[f.uid], f.attempt.stage,
                     dumps(f.attempt.errors, what=f"errors of unit {f.uid}"), now, step_idx,
                     f.uid)
                    for f in items
                ],
            )  # fmt: skip
        return [moves[f.uid][0] for f in items]

    @_guarded
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
                (new.value, output,
                 None if passed else stage,
                 None if passed else dumps(errors or [], what=f"errors of unit {uid}"),
                 now, step_idx, uid),
            )  # fmt: skip
            if passed:
                self._enter_next_step(step_idx, [uid], now)
        return new

    @_guarded
    def release_in_flight(self) -> int:
        """Return every ``in_flight`` unit not held by a live batch to ``pending``.

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
                            WHERE b.step_idx = ? AND b.state NOT IN ({_marks(terminal)}))""",
                    (new.value, now, k, _IN_FLIGHT, k, *terminal),
                ).rowcount
            if total:
                self._event("info", "RECOVER", f"released {total} in-flight unit(s)", None)
        return total

    @_guarded
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
        total = 0
        with self.transaction():
            now = self._now()
            for k in steps:
                total += self._db.execute(
                    f"""UPDATE unit_steps SET state = ?, updated_at = ?,
                            attempts_base = CASE WHEN ? THEN attempts ELSE attempts_base END
                        WHERE step_idx = ? AND state IN ({_marks(states)})
                          AND (? IS NULL OR last_stage = ?)
                          AND (? IS NULL OR uid IN (SELECT uid FROM units WHERE unit_id IN
                                                    (SELECT value FROM json_each(?))))""",
                    (new.value, now, reset_budget, k, *states, stage, stage, ids, ids),
                ).rowcount
            if total:
                self._event("info", "RETRY", f"requeued {total} failed unit(s)",
                            {"step": step_idx, "stage": stage})  # fmt: skip
        return total

    # --- integrity ------------------------------------------------------------------------

    @_guarded
    def counts(self) -> dict[int, dict[UnitStepState, int]]:
        """Units per state at every step (index range counts, one snapshot)."""
        with self._snapshot():
            return integrity.counts(self._db, len(self._steps))

    @_guarded
    def find_missing(self) -> dict[int, list[str]]:
        """Every unit id expected at a step that has no row there (all of them), per step."""
        with self._snapshot():
            return integrity.find_missing(self._db, self._steps)

    @_guarded
    def repair_missing(self) -> int:
        """Give every missing unit a ``pending`` row; returns how many were repaired."""
        with self.transaction():
            n = integrity.repair_missing(self._db, self._steps, self._now())
            if n:
                self._event("warning", "REPAIR", f"requeued {n} missing unit(s)", None)
        return n

    @_guarded
    def verify(self) -> VerifyReport:
        """Per step: expected, counts by state, every missing/duplicated/orphaned id."""
        with self._snapshot():
            return integrity.verify(self._db, self._steps)

    @_guarded
    def integrity_check(self) -> list[str]:
        """SQLite's page-level check (reads the whole file): ``[]`` when the file is sound."""
        rows = [r[0] for r in self._db.execute("PRAGMA integrity_check")]
        return [] if rows == ["ok"] else rows

    # --- reading --------------------------------------------------------------------------

    def iter_valid(self, step_idx: int) -> Iterator[tuple[str, Json]]:
        """``(unit_id, record)`` of every unit valid at a step, the record including this
        step's output; uid order, page by page."""
        self._step(step_idx)
        after = 0
        while page := self._read(reads.page, step_idx, (_VALID,), after, PAGE):
            inputs = self._read(reads.records, page, before=step_idx + 1)
            yield from (inputs[uid] for uid in page)
            after = page[-1]

    def iter_failures(self, step_idx: int) -> Iterator[FailureRow]:
        """Every failed or exhausted unit at a step with its last verdict, last raw response
        and input record; uid order, page by page."""
        self._step(step_idx)
        states = tuple(s.value for s in sorted(sources(UnitStepState, UnitStepEvent.RETRY)))
        after = 0
        while page := self._read(reads.page, step_idx, states, after, PAGE):
            yield from self._read(reads.failure_rows, step_idx, page)
            after = page[-1]

    @_guarded
    def uid_of(self, unit_id: str) -> int:
        row = self._db.execute("SELECT uid FROM units WHERE unit_id = ?", (unit_id,)).fetchone()
        if row is None:
            raise StoreError(f"no unit {unit_id!r} in run ledger {self._where}")
        return int(row[0])

    def unit_states(self, unit_id: str) -> dict[int, UnitStepState]:
        """A unit's state at every step where it has a row."""
        return self._read(reads.unit_states, self.uid_of(unit_id))

    def attempts_for(self, unit_id: str, step_idx: int | None = None) -> list[AttemptRow]:
        """Every attempt of a unit (at one step, or all), oldest first."""
        return self._read(reads.attempts_of, self.uid_of(unit_id), step_idx)

    def cost_totals(self) -> CostTotals:
        return self._read(reads.cost_totals)

    # --- blobs, events, commands ----------------------------------------------------------

    @_guarded
    def put_blob(self, text: str) -> int:
        with self.transaction():
            return put_blob(self._db, text)

    @_guarded
    def get_blob(self, blob_id: int) -> str:
        return get_blob(self._db, blob_id)

    @_guarded
    def log_event(self, level: Level, tag: str, message: str, data: Json | None = None) -> int:
        with self.transaction():
            return self._event(level, tag, message, data)

    @_guarded
    def events(self, after_id: int = 0, limit: int = 1_000) -> list[EventRow]:
        """Events with ``id > after_id``, oldest first (``logs -f`` polls with the last id)."""
        return [
            EventRow(i, ts, level, tag, msg, loads(data))
            for i, ts, level, tag, msg, data in self._db.execute(
                """SELECT id, ts, level, tag, message, data_json FROM events
                   WHERE id > ? ORDER BY id LIMIT ?""",
                (after_id, limit),
            )
        ]

    @_guarded
    def enqueue_command(self, kind: str, args: Json | None = None) -> int:
        """Queue a command for the live runner (the one write allowed without the lock)."""
        with self.transaction():
            cur = self._db.execute(
                "INSERT INTO commands(ts, kind, args_json, state) VALUES (?, ?, ?, ?)",
                (self._now(), kind, dumps(args or {}, what=f"command {kind}"),
                 CommandState.PENDING.value),
            )  # fmt: skip
            assert cur.lastrowid is not None
            return cur.lastrowid

    @_guarded
    def pending_commands(self) -> list[CommandRow]:
        return [
            CommandRow(i, ts, kind, loads(args), CommandState(state), applied_at, result)
            for i, ts, kind, args, state, applied_at, result in self._db.execute(
                """SELECT id, ts, kind, args_json, state, applied_at, result FROM commands
                   WHERE state = ? ORDER BY id""",
                (CommandState.PENDING.value,),
            )
        ]

    @_guarded
    def mark_command(self, command_id: int, event: CommandEvent, result: str | None = None) -> None:
        with self.transaction():
            row = self._db.execute(
                "SELECT state FROM commands WHERE id = ?", (command_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"no command {command_id} in run ledger {self._where}")
            new = advance(CommandState(row[0]), event)
            self._db.execute(
                "UPDATE commands SET state = ?, applied_at = ?, result = ? WHERE id = ?",
                (new.value, self._now(), result, command_id),
            )

    # --- batches (minimal: batch mode builds on these) ------------------------------------

    @_guarded
    def create_batch_intent(
        self,
        local_id: str,
        step_idx: int,
        *,
        provider: str,
        model: str,
        uids: Sequence[int],
        content_hash: str,
        estimate_usd: float | None = None,
    ) -> BatchRow:
        """Record a batch before it is sent. Its units must be claimed (``in_flight``) and in
        no other live batch of the step, so no unit is ever submitted twice."""
        self._step(step_idx, must_be="chunk")
        with self.transaction():
            return batch_sql.create_intent(
                self._db, local_id, step_idx, provider, model, uids, content_hash,
                estimate_usd, self._now(),
            )  # fmt: skip

    @_guarded
    def advance_batch(
        self,
        local_id: str,
        event: BatchEvent,
        *,
        provider_batch_id: str | None = None,
        provider_status: str | None = None,
        error: str | None = None,
        actual_usd: float | None = None,
    ) -> BatchRow:
        """Move a batch by ``event``. When it reaches a terminal state its units still
        ``in_flight`` (lines the provider dropped, an abandoned intent) go back to
        ``pending`` in the same transaction."""
        with self.transaction():
            row, released = batch_sql.advance_batch(
                self._db, local_id, event, provider_batch_id, provider_status, error,
                actual_usd, self._now(),
            )  # fmt: skip
            if released:
                self._event("warning", "BATCH",
                            f"batch {local_id}: {released} unit(s) without a result requeued",
                            {"batch": local_id, "released": released})  # fmt: skip
            return row

    @_guarded
    def batches(self, *states: BatchState, step_idx: int | None = None) -> list[BatchRow]:
        """Batches in any of ``states`` (all when none are given), oldest first."""
        return batch_sql.select(self._db, states, step_idx)

    @_guarded
    def batch_units(self, local_id: str) -> list[int]:
        return batch_sql.units_of(self._db, local_id)

    # --- internals ------------------------------------------------------------------------

    @_guarded
    def _read(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        return fn(self._db, *args, **kwargs)

    def _step(
        self, step_idx: int, *, must_be: str | None = None, must_not_be: str | None = None
    ) -> None:
        if not 0 <= step_idx < len(self._steps):
            raise ValueError(f"step {step_idx} is not a step of this run")
        scope = self._steps[step_idx].scope
        if must_be is not None and scope != must_be:
            raise ValueError(f"step {step_idx} is a {scope} step, not {must_be}")
        if must_not_be is not None and scope == must_not_be:
            raise ValueError(f"step {step_idx} is a {scope} step; use add_children")

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
            rows.append((first + i, unit_id, parent_uid, origin_step,
                         dumps(fields, what=f"fields of unit {unit_id!r}")))  # fmt: skip
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

    def _enter_next_step(self, step_idx: int, uids: Sequence[int], now: str) -> None:
        nxt = step_idx + 1
        if nxt >= len(self._steps):
            return
        try:
            self._db.executemany(
                "INSERT INTO unit_steps(uid, step_idx, state, updated_at) VALUES (?, ?, ?, ?)",
                ((uid, nxt, _PENDING, now) for uid in uids),
            )
        except sqlite3.IntegrityError:
            raise StoreError(f"a unit already has a row at step {nxt}") from None

    def _insert_attempts(
        self,
        step_idx: int,
        items: Sequence[tuple[int, int, AttemptRecord | None]],
        now: str,
    ) -> dict[int, int]:
        """Insert attempts ``(uid, attempt_no, record)``; returns ``uid -> attempt id``."""
        db = self._db
        first = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM attempts").fetchone()[0]
        batch_ids: dict[str, int] = {}
        rows = []
        for i, (uid, attempt_no, a) in enumerate(items):
            assert a is not None
            rows.append(
                (first + i, uid, step_idx, attempt_no, a.mode, a.provider, a.model,
                 self._batch_id(a.batch_local_id, batch_ids), a.started_at,
                 a.finished_at or now, a.outcome, a.stage,
                 dumps(a.errors, what=f"errors of unit {uid}"),
                 None if a.request is None else put_blob(db, a.request),
                 None if a.response is None else put_blob(db, a.response),
                 a.input_tokens, a.output_tokens, a.cached_tokens, a.cost_usd, a.latency_ms)
            )  # fmt: skip
        if rows:
            db.executemany(
                """INSERT INTO attempts(id, uid, step_idx, attempt_no, mode, provider, model,
                       batch_id, started_at, finished_at, outcome, stage, errors_json,
                       request_blob, response_blob, input_tokens, output_tokens, cached_tokens,
                       cost_usd, latency_ms)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                rows,
            )
        return {row[1]: row[0] for row in rows}

    def _batch_id(self, local_id: str | None, cache: dict[str, int]) -> int | None:
        if local_id is None:
            return None
        if local_id not in cache:
            found = self._db.execute(
                "SELECT id FROM batches WHERE local_id = ?", (local_id,)
            ).fetchone()
            if found is None:
                raise StoreError(f"attempt refers to unknown batch {local_id!r}")
            cache[local_id] = found[0]
        return cache[local_id]

    def _event(self, level: str, tag: str, message: str, data: Json | None) -> int:
        if level not in _LEVELS:
            raise ValueError(f"event level must be one of {_LEVELS}, not {level!r}")
        cur = self._db.execute(
            "INSERT INTO events(ts, level, tag, message, data_json) VALUES (?, ?, ?, ?, ?)",
            (self._now(), level, tag, message,
             None if data is None else dumps(data, what=f"event {tag}")),
        )  # fmt: skip
        assert cur.lastrowid is not None
        return cur.lastrowid

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Several reads against one consistent snapshot (a writer's open transaction
        already is one)."""
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            self._db.execute("COMMIT")


def _initialise(
    conn: sqlite3.Connection, meta: RunMeta, steps: Sequence[StepDef], now: str
) -> None:
    migrate(conn, now, fresh=True)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            """INSERT INTO run(id, name, display_name, pipeline_name, status, mode, provider,
                   model, created_at, updated_at, max_units, repeat, options_json)
               VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (meta.name, meta.display_name or meta.name, meta.pipeline_name,
             RunStatus.PENDING.value, meta.mode, meta.provider, meta.model, now, now,
             meta.max_units, meta.repeat, dumps(meta.options, what="run options")),
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO steps(idx, name, scope) VALUES (?, ?, ?)",
            ((i, s.name, s.scope) for i, s in enumerate(steps)),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _check_steps(steps: Sequence[StepDef]) -> None:
    names = [s.name for s in steps]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise StoreError(f"duplicate step names: {', '.join(dupes)}")
    for s in steps:
        if s.scope not in _UNIT_SCOPES:
            raise StoreError(
                f"step {s.name!r} has scope {s.scope!r}; only per-unit steps "
                f"({', '.join(_UNIT_SCOPES)}) belong in the ledger"
            )


def _sidecars(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))
