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
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from octopipe.core.commands import Command, decode, encode
from octopipe.core.states import (
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
from octopipe.errors import CommandError, CorruptValue, StoreError
from octopipe.store import batches as batch_sql
from octopipe.store import integrity, reads
from octopipe.store.base import guarded
from octopipe.store.browse_reads import BrowseReads
from octopipe.store.codec import Clock, dumps, get_blob, loads, put_blob, utc_now
from octopipe.store.connection import connect, store_error
from octopipe.store.intent import writer_intent
from octopipe.store.lifecycle import UnitLifecycle
from octopipe.store.local_walks import LocalWalks
from octopipe.store.post_runs import PostRuns, ViewReads
from octopipe.store.records import (
    AttemptRow,
    BatchRow,
    CommandRow,
    CostTotals,
    EventRow,
    FailureRow,
    Json,
    Level,
    RepairCounts,
    RunInfo,
    RunMeta,
    StepDef,
    TierCost,
    TierTotal,
    VerifyReport,
)
from octopipe.store.report_reads import ReportReads
from octopipe.store.schema import check_file, check_version, migrate, needed_by_readers

PAGE = 2_000
_T = TypeVar("_T")
_VALID = UnitStepState.VALID.value
_UNIT_SCOPES = ("chunk", "expression", "fan_out")


class Ledger(UnitLifecycle, LocalWalks, PostRuns, ViewReads, BrowseReads):
    """One run's ledger. Build with :meth:`create`, :meth:`open` or :meth:`in_memory`."""

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
        except BaseException as exc:
            for leftover in (tmp, *_sidecars(tmp)):
                leftover.unlink(missing_ok=True)
            if isinstance(exc, sqlite3.Error):
                raise store_error(exc, str(path)) from exc
            raise
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
            needed = needed_by_readers(todo)
            if needed and readonly:
                raise StoreError(
                    f"run ledger {path} uses an older schema (needs {', '.join(needed)}); "
                    "open it once read-write (for example by resuming the run) to upgrade it"
                )
            if todo and not readonly:
                migrate(conn, clock())
            return cls(
                conn,
                str(path),
                readonly=readonly,
                clock=clock,
                durable=durable,
                run_dir=path.parent,
            )
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.Error):
                raise store_error(exc, str(path)) from exc
            raise

    # --- the run --------------------------------------------------------------------------

    @guarded
    def run_info(self) -> RunInfo:
        r = self._db.execute(
            """SELECT name, display_name, pipeline_name, status, status_reason, mode, provider,
                      model, created_at, updated_at, started_at, finished_at, max_units, repeat,
                      options_json FROM run WHERE id = 1"""
        ).fetchone()
        return RunInfo(
            name=r[0],
            display_name=r[1],
            pipeline_name=r[2],
            status=RunStatus(r[3]),
            status_reason=r[4],
            mode=r[5],
            provider=r[6],
            model=r[7],
            created_at=r[8],
            updated_at=r[9],
            started_at=r[10],
            finished_at=r[11],
            max_units=r[12],
            repeat=r[13],
            options=loads(r[14], what="the run's options"),
            steps=self._steps,
        )

    @guarded
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
                {
                    "new": new.value,
                    "reason": reason,
                    "now": now,
                    "running": new is RunStatus.RUNNING,
                    "finished": finished,
                },
            )
            self._event("info", "STATE", f"run {old} -> {new} on {event}", {"reason": reason})
        return new

    @guarded
    def update_run(
        self,
        *,
        display_name: str | None = None,
        mode: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        options: Json | None = None,
    ) -> None:
        """Change descriptive fields (a rename, a mode switch). ``None`` keeps a field;
        ``options`` are merged into the stored ones."""
        if mode is not None and mode not in ("batch", "realtime"):
            raise ValueError(f"mode must be 'batch' or 'realtime', not {mode!r}")
        with self.transaction():
            if options:
                stored = loads(
                    self._db.execute("SELECT options_json FROM run").fetchone()[0],
                    what="the run's options",
                )
                self._db.execute(
                    "UPDATE run SET options_json = ?",
                    (dumps({**stored, **options}, what="run options"),),
                )
            self._db.execute(
                """UPDATE run SET display_name = COALESCE(?, display_name),
                       mode = COALESCE(?, mode), provider = COALESCE(?, provider),
                       model = COALESCE(?, model), updated_at = ? WHERE id = 1""",
                (display_name, mode, provider, model, self._now()),
            )

    # --- the snapshot's fingerprint ---------------------------------------------------------

    @guarded
    def snapshot_fingerprint(self) -> dict[str, str] | None:
        """``relative path -> digest`` of every file of the run's snapshot as recorded at init
        (or when an edit was accepted); ``None`` for a run made before fingerprints."""
        row = self._db.execute(
            "SELECT value FROM meta WHERE key = 'snapshot_fingerprint'"
        ).fetchone()
        if row is None:
            return None
        files = loads(row[0], what="the snapshot's fingerprint")
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            raise StoreError(
                f"run ledger {self._where}: the snapshot's fingerprint is not a map of file digests"
            )
        return files

    @guarded
    def record_snapshot_fingerprint(self, files: dict[str, str], reason: str) -> None:
        """Store the snapshot's fingerprint (at init, or when an edited snapshot is accepted
        knowingly); ``reason`` goes into the event log."""
        with self.transaction():
            self._db.execute(
                """INSERT INTO meta(key, value) VALUES ('snapshot_fingerprint', ?)
                   ON CONFLICT(key) DO UPDATE SET value = excluded.value""",
                (dumps(dict(sorted(files.items())), what="the snapshot's fingerprint"),),
            )
            self._event("info", "SNAPSHOT", reason, {"files": len(files)})

    # --- integrity ------------------------------------------------------------------------

    @guarded
    def counts(self) -> dict[int, dict[UnitStepState, int]]:
        """Units per state at every step (index range counts, one snapshot)."""
        with self._snapshot():
            return integrity.counts(self._db, len(self._steps))

    @guarded
    def find_missing(self) -> dict[int, list[str]]:
        """Every unit id expected at a step that has no row there (all of them), per step."""
        with self._snapshot():
            return integrity.find_missing(self._db, self._steps)

    @guarded
    def repair_missing(self) -> int:
        """:meth:`repair`; returns how many missing units were given a row."""
        return self.repair().missing

    @guarded
    def repair(self) -> RepairCounts:
        """Give every missing unit a ``pending`` row (taking up its attempt history), raise
        every attempt counter that is behind its stored attempts and rebuild a LLM totals row
        that disagrees with the attempts, in one transaction."""
        with self.transaction():
            done = integrity.repair(self._db, self._steps, self._now())
            if done.missing:
                self._event("warning", "REPAIR", f"requeued {done.missing} missing unit(s)", None)
            if done.recounted:
                self._event(
                    "warning",
                    "REPAIR",
                    f"raised the attempt counter of {done.recounted} unit-step(s) to their "
                    "stored attempts",
                    None,
                )
            if done.totals:
                self._event(
                    "warning", "REPAIR", "rebuilt the LLM totals row from the attempts", None
                )
            if done.missing or done.recounted:
                self._results_changed()
        return done

    @guarded
    def verify(self, *, runner_live: bool = True, deep: bool = True) -> VerifyReport:
        """Per step: expected, counts by state, every missing/duplicated/orphaned id; with
        ``runner_live=False`` every stranded in-flight unit; with ``deep`` (the default) every
        miscounted unit and every unit whose stored JSON cannot be read."""
        with self._snapshot():
            return integrity.verify(self._db, self._steps, runner_live=runner_live, deep=deep)

    @guarded
    def integrity_check(self) -> list[str]:
        """SQLite's page-level check (reads the whole file): ``[]`` when the file is sound."""
        rows = [r[0] for r in self._db.execute("PRAGMA integrity_check")]
        return [] if rows == ["ok"] else rows

    # --- reading --------------------------------------------------------------------------

    def iter_valid(self, step_idx: int) -> Iterator[tuple[str, Json]]:
        """``(unit_id, record)`` of every unit valid at a step, the record including this
        step's output; uid order, page by page."""
        return self._valid_pages(step_idx, reads.records)

    def iter_valid_parts(self, step_idx: int) -> Iterator[tuple[str, list[tuple[Json, str]]]]:
        """``(unit_id, parts)`` of every unit valid at a step: the documents its record is
        merged from (its fields, then each valid step's output up to this one, in step
        order), each with its stored text; uid order, page by page (``reads.record_parts``)."""
        return self._valid_pages(step_idx, reads.record_parts)

    def _valid_pages(self, step_idx: int, read: Callable[..., dict[int, _T]]) -> Iterator[_T]:
        """``read(conn, page, before=step_idx + 1)[uid]`` for every unit valid at a step, in
        uid order, a page at a time (the step is checked at once, before any page)."""
        self._step(step_idx)
        return self._valid_pages_from(step_idx, read)

    def _valid_pages_from(self, step_idx: int, read: Callable[..., dict[int, _T]]) -> Iterator[_T]:
        after = 0
        while page := self._read(reads.page, step_idx, (_VALID,), after, PAGE):
            found = self._read(read, page, before=step_idx + 1)
            yield from (found[uid] for uid in page)
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

    @guarded
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

    def tier_totals(self) -> list[TierTotal]:
        return self._read(reads.tier_totals)

    def cost_by_tier(self) -> list[TierCost]:
        """Cost per (provider, model, tier) and its standard-price equivalent."""
        return self._read(reads.cost_by_tier)

    # --- blobs, events, commands ----------------------------------------------------------

    @guarded
    def put_blob(self, text: str) -> int:
        with self.transaction():
            return put_blob(self._db, text)

    @guarded
    def get_blob(self, blob_id: int) -> str:
        return get_blob(self._db, blob_id)

    @guarded
    def log_event(self, level: Level, tag: str, message: str, data: Json | None = None) -> int:
        with self.transaction():
            return self._event(level, tag, message, data)

    @guarded
    def events(self, after_id: int = 0, limit: int = 1_000) -> list[EventRow]:
        """Events with ``id > after_id``, oldest first (``logs -f`` polls with the last id)."""
        return [
            EventRow(i, ts, level, tag, msg, loads(data, what=f"the data of event {i}"))
            for i, ts, level, tag, msg, data in self._db.execute(
                """SELECT id, ts, level, tag, message, data_json FROM events
                   WHERE id > ? ORDER BY id LIMIT ?""",
                (after_id, limit),
            )
        ]

    @guarded
    def recent_events(self, limit: int = 10) -> list[EventRow]:
        """The last ``limit`` events, oldest first (one indexed read, however long the log)."""
        rows = self._db.execute(
            """SELECT id, ts, level, tag, message, data_json FROM events
               ORDER BY id DESC LIMIT ?""",
            (limit,),
        ).fetchall()
        return [
            EventRow(i, ts, level, tag, msg, loads(data, what=f"the data of event {i}"))
            for i, ts, level, tag, msg, data in reversed(rows)
        ]

    @guarded
    def max_iteration_hits(self) -> dict[int, int]:
        """Units that reached their step's ``max_iterations``, by step index: the sum of the
        ``MAX_ITERATIONS`` events the runner records with each chunk (a unit computed again,
        after ``retry``, counts again)."""
        rows = self._db.execute(
            """SELECT json_extract(data_json, '$.step'), SUM(json_extract(data_json, '$.units'))
               FROM events WHERE tag = 'MAX_ITERATIONS' GROUP BY 1"""
        ).fetchall()
        return {int(step): int(units) for step, units in rows if step is not None}

    @guarded
    def enqueue_command(self, command: Command) -> int:
        """Queue a command for the live runner (the one write allowed without the lock),
        holding the writer's intent while it waits for SQLite's write lock. Stored as
        ``core.commands.encode`` gives it."""
        kind, args = encode(command)
        with self._intent(), self.transaction():
            cur = self._db.execute(
                "INSERT INTO commands(ts, kind, args_json, state) VALUES (?, ?, ?, ?)",
                (
                    self._now(),
                    kind,
                    dumps(args, what=f"command {kind}"),
                    CommandState.PENDING.value,
                ),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    @guarded
    def pending_commands(self) -> list[CommandRow]:
        """Queued commands, oldest first, read back through ``core.commands.decode``; a row
        that is not a command any more comes back with ``command=None`` and the ``problem``."""
        return [
            _command_row(i, ts, kind, args, CommandState(state), applied_at, result)
            for i, ts, kind, args, state, applied_at, result in self._db.execute(
                """SELECT id, ts, kind, args_json, state, applied_at, result FROM commands
                   WHERE state = ? ORDER BY id""",
                (CommandState.PENDING.value,),
            )
        ]

    @guarded
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

    def _intent(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext() if self._run_dir is None else writer_intent(self._run_dir)

    # --- batches (minimal: batch mode builds on these) ------------------------------------

    @guarded
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
        """Record a batch before it is sent (committed with ``synchronous=FULL``, so it
        survives a power cut). Its units must be claimed (``in_flight``) and in no other live
        batch of the step, so no unit is ever submitted twice."""
        self._step(step_idx, must_be="chunk")
        with self.durable_transaction():
            return batch_sql.create_intent(
                self._db,
                local_id,
                step_idx,
                provider,
                model,
                uids,
                content_hash,
                estimate_usd,
                self._now(),
            )

    @guarded
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
        ``pending`` in the same transaction. The commit always waits for the disk."""
        with self.durable_transaction():
            row, released = batch_sql.advance_batch(
                self._db,
                local_id,
                event,
                provider_batch_id,
                provider_status,
                error,
                actual_usd,
                self._now(),
            )
            if released:
                self._event(
                    "warning",
                    "BATCH",
                    f"batch {local_id}: {released} unit(s) without a result requeued",
                    {"batch": local_id, "released": released},
                )
            return row

    @guarded
    def note_batch_status(self, local_id: str, provider_status: str) -> None:
        """Store the provider's last word on a batch (``in_progress 1200/5000``)."""
        with self.transaction():
            batch_sql.note_status(self._db, local_id, provider_status)

    @guarded
    def batches(self, *states: BatchState, step_idx: int | None = None) -> list[BatchRow]:
        """Batches in any of ``states`` (all when none are given), oldest first."""
        return batch_sql.select(self._db, states, step_idx)

    @guarded
    def batch_units(self, local_id: str) -> list[int]:
        return batch_sql.units_of(self._db, local_id)

    # --- reports ---------------------------------------------------------------------------

    def report_reads(self) -> ReportReads:
        """The aggregates of ``report`` and ``compare`` over this ledger."""
        return ReportReads(self)


def _command_row(
    command_id: int,
    ts: str,
    kind: str,
    args: str,
    state: CommandState,
    applied_at: str | None,
    result: str | None,
) -> CommandRow:
    try:
        command = decode(kind, loads(args, what=f"the argument list of command {command_id}"))
    except (CommandError, CorruptValue) as exc:
        return CommandRow(command_id, ts, kind, None, exc.message, state, applied_at, result)
    return CommandRow(command_id, ts, kind, command, None, state, applied_at, result)


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
            (
                meta.name,
                meta.display_name or meta.name,
                meta.pipeline_name,
                RunStatus.PENDING.value,
                meta.mode,
                meta.provider,
                meta.model,
                now,
                now,
                meta.max_units,
                meta.repeat,
                dumps(meta.options, what="run options"),
            ),
        )
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
