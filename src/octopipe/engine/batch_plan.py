"""Batch scheduling as decisions: what to do next with each batch and each step, and when.

The batch executor (``engine.batch``) acts; this module decides, from a snapshot of the
batches not yet collected, the timers (what is due when: this module's memory, rebuilt
harmlessly after a restart) and ``now`` (monotonic seconds, passed in). Nothing here reads a
clock, draws a random number or does I/O, so every rule is tested as a table:

- ``plan_batches``: for each batch with nothing running and whose time has come, one action:
  ``Collect`` what ended at the provider; ``Reconcile`` an intent (one at a time, never while
  a submit is on the wire: two searches at once could adopt the same batch); ``Poll`` a
  submitted batch, or ``Cancel`` it once older than ``api.batch.deadline_hours`` (once).
- ``submit_open`` / ``step_open`` / ``plan_step``: whether to pack a batch of a step now: only
  with no submit on the wire and no reconcile running, fewer than ``api.max_inflight_batches``
  open; a step fallen back to realtime or backed off (after a 429, or a batch that failed)
  waits; a partial batch waits ``linger_s`` for more units while an upstream step may still
  send some.
- ``after_*``: what an outcome does to the timers: polls stretch while nothing moves (at most
  ``POLL_STRETCH`` intervals apart, with the jitter the caller drew) and back off on errors;
  an intent not found is looked for once more before it is abandoned; a cut download is
  fetched again with backoff, at most ``DOWNLOAD_TRIES`` times in a row, then the run pauses;
  an error that says the account cannot be used pauses the run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal

from octopipe.core.states import BATCH_ENDED, BatchState
from octopipe.errors import IncompleteResults, OctopipeError, ProviderError

POLL_STRETCH = 8  # a quiet batch is polled at most this many intervals apart
POLL_MAX_S = 600.0
JITTER = 0.1
"""Polls are spread by up to this share of their interval, either way (the caller draws it)."""
RECONCILE_MISSES = 1  # lookups that may miss before an intent is abandoned (then one more)
RECONCILE_AFTER_S = 5.0  # after an uncertain submit or a failed lookup, look this much later
DOWNLOAD_TRIES = 6
"""Incomplete downloads of one batch's results in a row before the run pauses (the waits
between them double from min(1 s, poll interval): at most 31 s in all)."""


@dataclass(frozen=True)
class PlanSettings:
    """The run's settings the decisions depend on."""

    poll_s: float
    linger_s: float = 0.0
    deadline_hours: float = 24.0
    max_inflight: int = 1_000_000
    retry_initial_s: float = 1.0
    retry_multiplier: float = 2.0
    retry_max_s: float = 60.0


# --- what the planner remembers --------------------------------------------------------------


@dataclass(frozen=True)
class BatchTimer:
    """When a batch is next due, and what its past polls and downloads were."""

    due: float = 0.0
    every: float = 0.0
    last_done: int = -1
    last_status: str = ""
    cancel_sent: bool = False
    misses: int = 0  # reconcile lookups that did not find the intent's batch
    downloads: int = 0  # incomplete downloads of the batch's results in a row
    last_cut: tuple[int, ...] | None = None  # the signature of the last incomplete one
    recorded: int = 0  # lines those incomplete downloads recorded


@dataclass(frozen=True)
class StepTimer:
    """A step's submissions: backed off until ``backoff_until`` (the last delay kept to grow
    the next), and since when a partial batch has been waiting for more units."""

    backoff_until: float = 0.0
    last_delay: float = 0.0
    waiting_since: float | None = None


def new_timer(settings: PlanSettings) -> BatchTimer:
    return BatchTimer(every=settings.poll_s)


# --- the snapshot and the actions ---------------------------------------------------------------


@dataclass(frozen=True)
class OpenBatch:
    """A batch not yet collected, as the planner sees it."""

    local_id: str
    state: BatchState
    age_h: float | None = None
    """Hours since it was submitted (``None``: not submitted)."""


@dataclass(frozen=True)
class StepView:
    """One LLM step, as far as submitting goes."""

    index: int
    pending: int
    """Pending units, counted up to ``max_requests``."""
    max_requests: int
    upstream_live: bool = False
    """An earlier step still has units pending or in flight (more may come)."""
    paused: bool = False
    """It fell back to realtime after a deadline: no more batches."""


@dataclass(frozen=True)
class Collect:
    local_id: str


@dataclass(frozen=True)
class Reconcile:
    local_id: str


@dataclass(frozen=True)
class Poll:
    local_id: str


@dataclass(frozen=True)
class Cancel:
    local_id: str


@dataclass(frozen=True)
class Submit:
    step: int


BatchAction = Collect | Reconcile | Poll | Cancel


# --- the decisions ----------------------------------------------------------------------------


def plan_batches(
    batches: Iterable[OpenBatch],
    timers: Mapping[str, BatchTimer],
    now: float,
    settings: PlanSettings,
    *,
    busy: frozenset[str] = frozenset(),
    submitting: bool = False,
    reconciling: bool = False,
) -> tuple[list[BatchAction], dict[str, BatchTimer]]:
    """What to start for each batch (``busy``: ids with an operation running) and the timers
    after it (every batch seen gets one)."""
    out = dict(timers)
    actions: list[BatchAction] = []
    for batch in batches:
        if batch.local_id in busy:
            continue
        timer = out.setdefault(batch.local_id, new_timer(settings))
        if now < timer.due:
            continue
        if batch.state in BATCH_ENDED:
            actions.append(Collect(batch.local_id))
        elif batch.state is BatchState.INTENT:
            if submitting or reconciling:
                continue
            reconciling = True
            actions.append(Reconcile(batch.local_id))
        elif batch.state is BatchState.SUBMITTED:
            stuck = batch.age_h is not None and batch.age_h > settings.deadline_hours
            if stuck and not timer.cancel_sent:
                out[batch.local_id] = replace(timer, cancel_sent=True)
                actions.append(Cancel(batch.local_id))
            else:
                actions.append(Poll(batch.local_id))
    return actions, out


def submit_open(
    open_batches: int, settings: PlanSettings, *, submitting: bool, reconciling: bool
) -> bool:
    """Whether a batch may be packed now at all: one submit on the wire at a time (a
    50,000-request batch costs ~200 MB while it is built and sent), none while an intent is
    reconciled (it must not race a new batch of the same size), fewer than
    ``max_inflight`` open."""
    return not submitting and not reconciling and open_batches < settings.max_inflight


def step_open(timer: StepTimer | None, now: float, *, paused: bool) -> bool:
    """Whether a step may be looked at for a batch at all (before its pending units are
    counted): not fallen back to realtime, not backed off."""
    return not paused and now >= (timer or StepTimer()).backoff_until


def plan_step(
    step: StepView, timer: StepTimer | None, now: float, settings: PlanSettings
) -> tuple[Submit | None, StepTimer]:
    """Whether to pack a batch of ``step`` now, and its timer after deciding: a partial batch
    waits ``linger_s`` for more units while an upstream step may still send some (when that
    wait started is remembered); a step with nothing pending forgets it. Ask only while
    ``submit_open``."""
    timer = timer or StepTimer()
    if not step_open(timer, now, paused=step.paused):
        return None, timer
    if not step.pending:
        return None, replace(timer, waiting_since=None)
    if step.pending < step.max_requests and step.upstream_live:
        if timer.waiting_since is None:
            timer = replace(timer, waiting_since=now)
        assert timer.waiting_since is not None
        if now - timer.waiting_since < settings.linger_s:
            return None, timer
    return Submit(step.index), timer


# --- outcomes ---------------------------------------------------------------------------------


def after_packed(timer: StepTimer | None) -> StepTimer:
    """A batch of the step was packed: the wait for a fuller one is over."""
    return replace(timer or StepTimer(), waiting_since=None)


def back_off(
    timer: StepTimer | None, retry_after: float | None, now: float, settings: PlanSettings
) -> StepTimer:
    """``api.retry``'s backoff for a step whose submit was rate limited (honouring
    ``Retry-After``) or whose batch failed: each delay grows from the last."""
    timer = timer or StepTimer()
    delay = min(
        max(settings.retry_initial_s, timer.last_delay * settings.retry_multiplier),
        settings.retry_max_s,
    )
    delay = max(delay, retry_after or 0.0)
    return replace(timer, backoff_until=now + delay, last_delay=delay)


def after_submitted(
    timer: StepTimer | None, now: float, settings: PlanSettings
) -> tuple[BatchTimer, StepTimer]:
    """The provider took the batch: poll it after an interval; the step's backoff is over."""
    step = replace(timer or StepTimer(), backoff_until=0.0, last_delay=0.0)
    return BatchTimer(due=now + settings.poll_s, every=settings.poll_s), step


def after_uncertain_submit(now: float) -> BatchTimer:
    """A submit that timed out or met a 5xx: the batch may exist; look for it a little later."""
    return BatchTimer(due=now + RECONCILE_AFTER_S)


def after_poll(
    timer: BatchTimer, done: int, note: str, now: float, settings: PlanSettings, spread: float = 1.0
) -> BatchTimer:
    """A poll of a batch still running: the next one an interval later, stretched (x1.5, up
    to ``POLL_STRETCH`` intervals) while the count of finished requests does not move;
    ``spread`` is the jitter factor (within 1 +- ``JITTER``)."""
    if done == timer.last_done:  # nothing moved: look less often
        every = min(timer.every * 1.5, settings.poll_s * POLL_STRETCH, POLL_MAX_S)
    else:
        every = settings.poll_s
    due = now + max(settings.poll_s, every) * spread
    return replace(timer, every=every, due=due, last_done=done, last_status=note)


def after_poll_error(timer: BatchTimer, now: float) -> BatchTimer:
    """A poll that failed (and may be tried again): the interval doubles, up to ``POLL_MAX_S``."""
    every = min(timer.every * 2, POLL_MAX_S)
    return replace(timer, every=every, due=now + every)


class PollError(StrEnum):
    LOST = "lost"  # the provider no longer knows the batch: its units are sent again
    PAUSE = "pause"  # the account cannot be used: the run pauses
    RETRY = "retry"  # try again later (``after_poll_error``)


def poll_error(exc: ProviderError) -> PollError:
    if exc.status == 404:
        return PollError.LOST
    return PollError.PAUSE if exc.fatal_for_run else PollError.RETRY


class Lookup(StrEnum):
    """What came of looking for an intent's batch at the provider."""

    ADOPT = "adopt"  # found: it is ours
    LOOK_AGAIN = "look_again"  # not found, but the provider's list may lag: once more
    ABANDON = "abandon"  # not found twice: it never reached the provider
    RETRY = "retry"  # the lookup failed: try later


def after_lookup(
    timer: BatchTimer | None,
    result: Literal["found", "missing", "error"],
    now: float,
    settings: PlanSettings,
) -> tuple[BatchTimer, Lookup]:
    if result == "error":
        return BatchTimer(due=now + RECONCILE_AFTER_S), Lookup.RETRY
    if result == "found":
        return BatchTimer(due=now, every=settings.poll_s), Lookup.ADOPT
    timer = timer or new_timer(settings)
    if timer.misses < RECONCILE_MISSES:
        return replace(
            timer, misses=timer.misses + 1, due=now + RECONCILE_AFTER_S
        ), Lookup.LOOK_AGAIN
    return timer, Lookup.ABANDON


def after_cancel(timer: BatchTimer, now: float) -> BatchTimer:
    """A stuck batch was asked to cancel: poll it now (``cancel_sent`` stays set)."""
    return replace(timer, due=now)


def after_collect_error(now: float, settings: PlanSettings) -> BatchTimer:
    """A download that failed outright (not a 404): try again an interval later."""
    return BatchTimer(due=now + settings.poll_s)


@dataclass(frozen=True)
class Refetch:
    """What to do after a batch's results came back incomplete (see ``after_incomplete``).
    Neither field set: take the results as complete; what they lack was dropped."""

    delay_s: float | None = None
    """Fetch the results again after this long."""
    pause: str | None = None
    """Stop the run, with this reason (the batch stays open for the next start)."""


def after_incomplete(
    exc: IncompleteResults, tries: int, previous: tuple[int, ...] | None, poll_s: float
) -> Refetch:
    """Decide after an incomplete download: ``tries`` counts this batch's incomplete downloads
    in a row, this one included; ``previous`` is the signature of the one before it."""
    if not exc.certain and previous == exc.signature:
        return Refetch()  # looked short, and came back exactly the same: it is what it is
    if tries >= DOWNLOAD_TRIES:
        return Refetch(
            pause=f"{exc.message}, {tries} downloads in a row; no request was taken as "
            "missing, resume to fetch them again"
        )
    return Refetch(delay_s=min(1.0, poll_s) * 2 ** (tries - 1))


def after_cut_download(
    timer: BatchTimer | None,
    exc: IncompleteResults,
    recorded: int,
    now: float,
    settings: PlanSettings,
) -> tuple[BatchTimer, Refetch]:
    """A download came back incomplete, ``recorded`` of its lines recorded: the decision
    (``after_incomplete``) and the batch's timer after it."""
    timer = timer or new_timer(settings)
    downloads = timer.downloads + 1
    decision = after_incomplete(exc, downloads, timer.last_cut, settings.poll_s)
    timer = replace(
        timer, downloads=downloads, last_cut=exc.signature, recorded=timer.recorded + recorded
    )
    if decision.delay_s is not None:
        timer = replace(timer, due=now + decision.delay_s)
    return timer, decision


class TaskError(StrEnum):
    """What an operation on a batch that raised does to the run."""

    RETRY = "retry"  # a provider error: the batch is tried again later
    PAUSE = "pause"  # no key, auth, quota, a provider not set up: the run pauses
    CRASH = "crash"  # a bug: the runner stops with it


def after_task_error(
    timer: BatchTimer | None, exc: BaseException, now: float, settings: PlanSettings
) -> tuple[BatchTimer | None, TaskError]:
    if isinstance(exc, ProviderError) and not exc.fatal_for_run:
        timer = timer or new_timer(settings)
        every = min(max(timer.every, settings.poll_s) * 2, POLL_MAX_S)
        return replace(timer, every=every, due=now + every), TaskError.RETRY
    if isinstance(exc, OctopipeError):
        return timer, TaskError.PAUSE
    return timer, TaskError.CRASH


def next_poll_in(
    batches: Iterable[OpenBatch], timers: Mapping[str, BatchTimer], now: float
) -> float | None:
    """Seconds until the next poll of a submitted batch (for the heartbeat), if any."""
    due = [
        timers[b.local_id].due
        for b in batches
        if b.state is BatchState.SUBMITTED and b.local_id in timers
    ]
    return max(0.0, min(due) - now) if due else None


__all__ = [
    "DOWNLOAD_TRIES",
    "BatchAction",
    "BatchTimer",
    "Cancel",
    "Collect",
    "Lookup",
    "OpenBatch",
    "PlanSettings",
    "Poll",
    "PollError",
    "Reconcile",
    "Refetch",
    "StepTimer",
    "StepView",
    "Submit",
    "TaskError",
    "after_cancel",
    "after_collect_error",
    "after_cut_download",
    "after_incomplete",
    "after_lookup",
    "after_packed",
    "after_poll",
    "after_poll_error",
    "after_submitted",
    "after_task_error",
    "after_uncertain_submit",
    "back_off",
    "next_poll_in",
    "plan_batches",
    "plan_step",
    "poll_error",
    "step_open",
    "submit_open",
]
