"""The run store as the engine sees it: two protocols, whatever keeps the records.

``RunReader`` is what a view needs (``status``, ``info``, ``verify``, exports, ``report``,
the TUI): the run, counts per step and state, integrity reports, results and failures,
history, events, the command queue, batches, post-processing records and the report
aggregates (``ReportReader``). It never changes anything and never slows the writer.

``RunStore`` adds what the run's one writer does: claims, verdicts, requeues, batch records,
commands, the run's status, events, and the transaction that groups them. Beside it, two
processes that are not the writer may use a ``RunStore``: a CLI queueing a command
(``enqueue_command``, the one write allowed without the run lock) and a CLI changing a run
whose lock it has taken.

Guarantees every implementation keeps (``tests/store`` holds the contract suite that checks
them on each one; see ``store/README.md``):

* every writing method is one atomic change; ``transaction()`` groups several into one and
  nests (an inner failure rolls back only its own writes);
* unit states move only through ``core.states.advance``: an illegal move raises
  ``IllegalTransition`` before anything is written;
* history is append-only: attempts are never rewritten or dropped;
* a unit is in at most one live batch of a step, and a unit of a live batch is never pending;
* a claim records its owner (:meth:`RunStore.register_runner`), and releasing one owner's
  claims leaves every other owner's;
* every id, never a sample, in integrity answers;
* failures are ``StoreError`` (``CorruptValue`` for a damaged stored value) naming the store.

Open one with :func:`octopipe.store.open_run_store`; SQLite is today's only implementation
(``store/ledger.py``). Method names are the SQLite ``Ledger``'s, so code written against it
reads the same against the protocol.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, Self

from octopipe.core.commands import Command
from octopipe.core.states import (
    BatchEvent,
    BatchState,
    CommandEvent,
    RunEvent,
    RunStatus,
    UnitStepState,
)
from octopipe.store.records import (
    AttemptGroup,
    AttemptRecord,
    AttemptRow,
    BatchRow,
    ClaimedUnit,
    CleanWalk,
    CommandRow,
    CostTotals,
    ErrorText,
    EventRow,
    FailedAttempt,
    Failure,
    FailureRow,
    InFlightUnit,
    Json,
    Level,
    PostKind,
    PostOutcome,
    PostRunRow,
    RepairCounts,
    RunInfo,
    RunnerIdentity,
    StepDef,
    Success,
    TierCost,
    TierTotal,
    UnitAtStep,
    UnitRow,
    ValueGroup,
    VerifyReport,
)


class ReportReader(Protocol):
    """The aggregates behind ``report`` and ``compare``: each one set-based over the store,
    never a loop over units in the caller (see ``store/report_reads.py``)."""

    def attempt_groups(self) -> list[AttemptGroup]:
        """Attempts with their token and cost sums by step, outcome, attempt number, mode,
        provider and model."""

    def units_retried(self) -> dict[int, int]:
        """Distinct units with more than one attempt, per step."""

    def stage_counts(self, step_idx: int) -> list[tuple[str, str | None, int]]:
        """``(state, stage, units)`` of a step's retrying and failed units."""

    def children_of(self, step_idx: int) -> int: ...
    def error_texts(self, step_idx: int, *, attempts: bool = False) -> list[ErrorText]: ...
    def failure_groups(self, step_idx: int, field: str) -> list[ValueGroup]: ...
    def sample_fields(self) -> list[str]: ...


class RunReader(Protocol):
    """Read-only access to one run's records."""

    @property
    def steps(self) -> tuple[StepDef, ...]:
        """The per-unit steps, in pipeline order (indexes are positions here)."""

    @property
    def path(self) -> str:
        """Where the store is, for messages (``:memory:`` for a private one)."""

    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...

    # --- the run ------------------------------------------------------------------------
    def run_info(self) -> RunInfo: ...
    def snapshot_fingerprint(self) -> dict[str, str] | None:
        """``relative path -> digest`` of the run's snapshot; ``None`` for an old run."""

    def results_version(self) -> int:
        """Counts the changes of what exports show: equal numbers, equal exports."""

    # --- counts and integrity -----------------------------------------------------------
    def counts(self) -> dict[int, dict[UnitStepState, int]]:
        """Units per state at every step, every state present."""

    def find_missing(self) -> dict[int, list[str]]: ...
    def verify(self, *, runner_live: bool = True, deep: bool = True) -> VerifyReport: ...

    # --- results, failures, history -----------------------------------------------------
    def iter_valid(self, step_idx: int) -> Iterator[tuple[str, Json]]: ...
    def iter_valid_parts(self, step_idx: int) -> Iterator[tuple[str, list[tuple[Json, str]]]]:
        """What `iter_valid` merges, unmerged: each unit's fields, then each valid step's
        output up to ``step_idx``, each document with its stored JSON text."""

    def iter_failures(self, step_idx: int) -> Iterator[FailureRow]: ...
    def uid_of(self, unit_id: str) -> int:
        """The store's number for a unit; ``StoreError`` naming the id if there is none."""

    def unit_states(self, unit_id: str) -> dict[int, UnitStepState]: ...
    def attempts_for(self, unit_id: str, step_idx: int | None = None) -> list[AttemptRow]: ...
    def cost_totals(self) -> CostTotals: ...
    def tier_totals(self) -> list[TierTotal]: ...
    def cost_by_tier(self) -> list[TierCost]: ...

    # --- browsing (the TUI's units table and inspector) --------------------------------------
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
    ) -> list[UnitRow]: ...
    def failed_by_stage(self) -> dict[int, dict[str, int]]: ...
    def unit_fields(self, unit_id: str) -> tuple[int, Json] | None: ...
    def unit_at_steps(self, uid: int) -> list[UnitAtStep]: ...
    def get_blob(self, blob_id: int) -> str: ...

    # --- events, commands, batches ------------------------------------------------------
    def events(self, after_id: int = 0, limit: int = 1_000) -> list[EventRow]: ...
    def recent_events(self, limit: int = 10) -> list[EventRow]: ...
    def max_iteration_hits(self) -> dict[int, int]: ...
    def pending_commands(self) -> list[CommandRow]:
        """Queued commands, oldest first; one stored unreadably comes back with
        ``command=None`` and the ``problem``, never as an exception."""

    def batches(self, *states: BatchState, step_idx: int | None = None) -> list[BatchRow]: ...
    def batch_units(self, local_id: str) -> list[int]: ...

    # --- post-processing, the Octobatch-compatible view, reports ------------------------
    def post_runs(self) -> list[PostRunRow]:
        """The latest record of every post-processing action, in plan order."""

    def post_history(self, action: str) -> list[PostRunRow]: ...
    def unit_uids(self) -> array[int]:
        """Every unit's number in order: a unit's rank is its index here."""

    def iter_units(self) -> Iterator[tuple[int, str, Json]]: ...
    def iter_valid_with_uid(self, step_idx: int) -> Iterator[tuple[int, str, Json]]: ...
    def iter_failed_attempts(self, step_idx: int) -> Iterator[FailedAttempt]: ...
    def report_reads(self) -> ReportReader:
        """The report aggregates over this store."""


class RunStore(RunReader, Protocol):
    """The writer's access to one run's records (see the module notes for who writes)."""

    # --- grouping changes ---------------------------------------------------------------
    def transaction(self) -> AbstractContextManager[None]:
        """One atomic change; nested uses are savepoints of the outermost one."""

    def durable_transaction(self) -> AbstractContextManager[None]:
        """A transaction whose commit survives a power cut (batch records: money moves right
        after them)."""

    def writer_waiting(self) -> bool:
        """True while another process waits to write (a command being queued): a writer that
        changes the store back to back should leave it alone for a moment."""

    # --- the run ------------------------------------------------------------------------
    def register_runner(self, runner: RunnerIdentity) -> None:
        """Record the runner driving the run now; the claims this store makes carry it."""

    def set_run_status(self, event: RunEvent, reason: str | None = None) -> RunStatus: ...
    def update_run(
        self,
        *,
        display_name: str | None = None,
        mode: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        options: Json | None = None,
    ) -> None: ...
    def record_snapshot_fingerprint(self, files: dict[str, str], reason: str) -> None: ...
    def repair(self) -> RepairCounts: ...
    def log_event(self, level: Level, tag: str, message: str, data: Json | None = None) -> int: ...
    def put_blob(self, text: str) -> int: ...

    # --- units: entering, claims, verdicts ----------------------------------------------
    def add_units(
        self,
        units: Iterable[tuple[str, Mapping[str, Any]]],
        *,
        origin_step: int = 0,
        parent_uid: int | None = None,
        batch: int = 5_000,
    ) -> int: ...
    def add_children(
        self,
        parent_uid: int,
        step_idx: int,
        children: Iterable[tuple[str, Mapping[str, Any]]],
    ) -> list[int]: ...
    def claim_pending(
        self, step_idx: int, limit: int, *, retries: bool | None = None
    ) -> list[ClaimedUnit]: ...
    def peek_pending(self, step_idx: int, limit: int) -> list[ClaimedUnit]: ...
    def in_flight_units(self, step_idx: int, uids: Sequence[int]) -> list[ClaimedUnit]: ...
    def in_flight(self, step_idx: int, uids: Sequence[int]) -> list[InFlightUnit]: ...
    def inputs_of(self, step_idx: int, uids: Sequence[int]) -> dict[int, tuple[str, Json]]: ...
    def pending_count(self, step_idx: int, cap: int) -> int: ...
    def live_before(self, step_idx: int) -> bool: ...
    def record_success(
        self,
        uid: int,
        step_idx: int,
        delta: Mapping[str, Any],
        attempt: AttemptRecord | None = None,
    ) -> int | None: ...
    def record_successes(
        self, step_idx: int, items: Iterable[Success], *, claim_next: bool = False
    ) -> int: ...
    def claim_units(self, step_idx: int, uids: Sequence[int]) -> None: ...
    def record_clean_walks(self, step_idx: int, walks: Sequence[CleanWalk]) -> int:
        """Units pending at ``step_idx`` that passed consecutive local steps with nothing to
        keep but their outputs: each step valid, then pending at the step after (one write per
        unit and step; ``store/local_walks.py``)."""

    def record_failure(
        self, uid: int, step_idx: int, attempt: AttemptRecord, terminal: bool
    ) -> UnitStepState: ...
    def record_failures(self, step_idx: int, items: Iterable[Failure]) -> list[UnitStepState]: ...
    def record_revalidation(
        self,
        uid: int,
        step_idx: int,
        *,
        delta: Mapping[str, Any] | None,
        stage: str | None = None,
        errors: list[Json] | None = None,
    ) -> UnitStepState: ...
    def release_in_flight(self, *, owner: str | None = None) -> int:
        """Claimed units no live batch holds go back to pending: every owner's, or only
        ``owner``'s (a runner's token)."""

    def release_units(self, step_idx: int, uids: Sequence[int]) -> int: ...
    def requeue_failed(
        self,
        step_idx: int | None = None,
        stage: str | None = None,
        unit_ids: Iterable[str] | None = None,
        *,
        include_exhausted: bool = True,
        reset_budget: bool = True,
    ) -> int: ...

    # --- commands -----------------------------------------------------------------------
    def enqueue_command(self, command: Command) -> int:
        """Queue a command for the live runner (the one write allowed without the lock)."""

    def mark_command(
        self, command_id: int, event: CommandEvent, result: str | None = None
    ) -> None: ...

    # --- batches ------------------------------------------------------------------------
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
    ) -> BatchRow: ...
    def advance_batch(
        self,
        local_id: str,
        event: BatchEvent,
        *,
        provider_batch_id: str | None = None,
        provider_status: str | None = None,
        error: str | None = None,
        actual_usd: float | None = None,
    ) -> BatchRow: ...
    def note_batch_status(self, local_id: str, provider_status: str) -> None: ...

    # --- post-processing ----------------------------------------------------------------
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
        """Record that an action starts (or was skipped, and why); returns its record's id."""

    def finish_post_run(
        self, row_id: int, outcome: PostOutcome, exit_code: int | None, detail: str | None
    ) -> None: ...
