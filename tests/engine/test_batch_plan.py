"""The batch planner (``engine.batch_plan``) as tables: snapshot + timers + now -> actions.

No ledger, no provider, no clock: each row is a situation and what must be decided in it.
"""

from __future__ import annotations

import pytest

from octopipe.core.states import BATCH_ENDED, BatchState
from octopipe.engine.batch_plan import (
    DOWNLOAD_TRIES,
    POLL_MAX_S,
    POLL_STRETCH,
    RECONCILE_AFTER_S,
    BatchTimer,
    Cancel,
    Collect,
    Lookup,
    OpenBatch,
    PlanSettings,
    Poll,
    PollError,
    Reconcile,
    StepTimer,
    StepView,
    Submit,
    TaskError,
    after_cancel,
    after_collect_error,
    after_cut_download,
    after_lookup,
    after_packed,
    after_poll,
    after_poll_error,
    after_submitted,
    after_task_error,
    after_uncertain_submit,
    back_off,
    next_poll_in,
    plan_batches,
    plan_step,
    poll_error,
    step_open,
    submit_open,
)
from octopipe.errors import (
    AuthError,
    IncompleteResults,
    QuotaExhausted,
    RateLimited,
    TransientProviderError,
    UsageError,
)

S = PlanSettings(poll_s=10.0, linger_s=30.0, deadline_hours=24.0, max_inflight=2)
INTENT, SUB, DONE = BatchState.INTENT, BatchState.SUBMITTED, BatchState.COMPLETED


def _b(local_id: str, state: BatchState, age_h: float | None = None) -> OpenBatch:
    return OpenBatch(local_id, state, age_h)


# --- which batch gets which operation -----------------------------------------------------------


@pytest.mark.parametrize(
    ("batches", "timers", "busy", "submitting", "expected"),
    [
        # a batch whose time has come gets the operation of its state
        ([_b("a", SUB, 1.0)], {}, (), False, [Poll("a")]),
        ([_b("a", INTENT)], {}, (), False, [Reconcile("a")]),
        *[([_b("a", s)], {}, (), False, [Collect("a")]) for s in sorted(BATCH_ENDED)],
        # not yet due, or something already running on it: nothing
        ([_b("a", SUB, 1.0)], {"a": BatchTimer(due=101.0)}, (), False, []),
        ([_b("a", DONE)], {"a": BatchTimer(due=101.0)}, (), False, []),
        ([_b("a", SUB, 1.0)], {}, ("a",), False, []),
        # due exactly now: due
        ([_b("a", SUB, 1.0)], {"a": BatchTimer(due=100.0)}, (), False, [Poll("a")]),
        # past the deadline: cancelled once, then polled until it ends
        ([_b("a", SUB, 25.0)], {}, (), False, [Cancel("a")]),
        ([_b("a", SUB, 25.0)], {"a": BatchTimer(cancel_sent=True)}, (), False, [Poll("a")]),
        ([_b("a", SUB, 24.0)], {}, (), False, [Poll("a")]),  # at the deadline: not past it
        # intents: one reconcile at a time, none while a submit is on the wire
        ([_b("a", INTENT), _b("b", INTENT)], {}, (), False, [Reconcile("a")]),
        ([_b("a", INTENT), _b("b", SUB, 1.0)], {}, (), True, [Poll("b")]),
        # an intent being reconciled is busy; the other one waits for it
        ([_b("a", INTENT), _b("b", INTENT)], {}, ("a",), False, [Reconcile("b")]),
        # several batches: each gets its own, in the order given
        (
            [_b("a", DONE), _b("b", SUB, 1.0), _b("c", INTENT)],
            {},
            (),
            False,
            [Collect("a"), Poll("b"), Reconcile("c")],
        ),
    ],
)
def test_plan_batches(
    batches: list[OpenBatch],
    timers: dict[str, BatchTimer],
    busy: tuple[str, ...],
    submitting: bool,
    expected: list[object],
) -> None:
    actions, _ = plan_batches(
        batches, timers, 100.0, S, busy=frozenset(busy), submitting=submitting
    )
    assert actions == expected


def test_plan_batches_with_a_reconcile_running_starts_no_other() -> None:
    actions, _ = plan_batches([_b("a", INTENT), _b("b", DONE)], {}, 0.0, S, reconciling=True)
    assert actions == [Collect("b")]


def test_plan_batches_gives_every_batch_seen_a_timer_and_marks_a_cancel() -> None:
    actions, timers = plan_batches([_b("a", SUB, 30.0), _b("b", INTENT)], {}, 5.0, S)
    assert actions == [Cancel("a"), Reconcile("b")]
    assert timers == {"a": BatchTimer(every=10.0, cancel_sent=True), "b": BatchTimer(every=10.0)}
    # the timers passed in are not changed
    before = {"a": BatchTimer(every=10.0)}
    plan_batches([_b("a", SUB, 30.0)], before, 5.0, S)
    assert before == {"a": BatchTimer(every=10.0)}


# --- when to pack the next batch ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("open_batches", "submitting", "reconciling", "expected"),
    [
        (0, False, False, True),
        (1, False, False, True),
        (2, False, False, False),  # max_inflight_batches reached
        (3, False, False, False),
        (0, True, False, False),  # one submit on the wire at a time
        (0, False, True, False),  # never while an intent is looked for
    ],
)
def test_submit_open(
    open_batches: int, submitting: bool, reconciling: bool, expected: bool
) -> None:
    assert submit_open(open_batches, S, submitting=submitting, reconciling=reconciling) is expected


@pytest.mark.parametrize(
    ("view", "timer", "now", "expected", "timer_after"),
    [
        # a full batch pending: at once, whatever upstream does
        (StepView(0, 100, 100, upstream_live=True), None, 50.0, Submit(0), StepTimer()),
        # a partial batch with nothing upstream: at once
        (StepView(0, 3, 100), None, 50.0, Submit(0), StepTimer()),
        # a partial batch while upstream may add more: waits linger_s from the first look
        (
            StepView(0, 3, 100, upstream_live=True),
            None,
            50.0,
            None,
            StepTimer(waiting_since=50.0),
        ),
        (
            StepView(0, 3, 100, upstream_live=True),
            StepTimer(waiting_since=50.0),
            79.0,
            None,
            StepTimer(waiting_since=50.0),
        ),
        (
            StepView(0, 3, 100, upstream_live=True),
            StepTimer(waiting_since=50.0),
            80.0,
            Submit(0),
            StepTimer(waiting_since=50.0),
        ),
        # nothing pending: no batch, and the wait is forgotten
        (StepView(0, 0, 100), StepTimer(waiting_since=50.0), 60.0, None, StepTimer()),
        # backed off (a 429 or a failed batch): waits until the backoff is over
        (
            StepView(0, 100, 100),
            StepTimer(backoff_until=61.0, last_delay=4.0),
            60.0,
            None,
            StepTimer(backoff_until=61.0, last_delay=4.0),
        ),
        (
            StepView(0, 100, 100),
            StepTimer(backoff_until=61.0, last_delay=4.0),
            61.0,
            Submit(0),
            StepTimer(backoff_until=61.0, last_delay=4.0),
        ),
        # fallen back to realtime after a deadline: never again
        (StepView(0, 100, 100, paused=True), None, 60.0, None, StepTimer()),
    ],
)
def test_plan_step(
    view: StepView,
    timer: StepTimer | None,
    now: float,
    expected: Submit | None,
    timer_after: StepTimer,
) -> None:
    assert plan_step(view, timer, now, S) == (expected, timer_after)


@pytest.mark.parametrize(
    ("timer", "now", "paused", "expected"),
    [
        (None, 0.0, False, True),
        (StepTimer(backoff_until=5.0), 4.9, False, False),
        (StepTimer(backoff_until=5.0), 5.0, False, True),
        (None, 0.0, True, False),
    ],
)
def test_step_open(timer: StepTimer | None, now: float, paused: bool, expected: bool) -> None:
    assert step_open(timer, now, paused=paused) is expected


def test_after_packed_ends_the_wait() -> None:
    assert after_packed(StepTimer(backoff_until=3.0, waiting_since=1.0)) == StepTimer(
        backoff_until=3.0
    )
    assert after_packed(None) == StepTimer()


RETRY = PlanSettings(poll_s=10.0, retry_initial_s=2.0, retry_multiplier=3.0, retry_max_s=20.0)


@pytest.mark.parametrize(
    ("last_delay", "retry_after", "delay"),
    [
        (0.0, None, 2.0),  # the first backoff: the initial delay
        (2.0, None, 6.0),  # then each grows by the multiplier
        (6.0, None, 18.0),
        (18.0, None, 20.0),  # up to the maximum
        (0.0, 45.0, 45.0),  # a Retry-After longer than the backoff is honoured
        (6.0, 1.0, 18.0),  # a shorter one is not a reason to come back sooner
    ],
)
def test_back_off(last_delay: float, retry_after: float | None, delay: float) -> None:
    timer = back_off(StepTimer(last_delay=last_delay), retry_after, 100.0, RETRY)
    assert timer == StepTimer(backoff_until=100.0 + delay, last_delay=delay)


def test_after_submitted_polls_an_interval_later_and_ends_the_backoff() -> None:
    batch, step = after_submitted(
        StepTimer(backoff_until=9.0, last_delay=4.0, waiting_since=1.0), 100.0, S
    )
    assert batch == BatchTimer(due=110.0, every=10.0)
    assert step == StepTimer(waiting_since=1.0)


def test_after_an_uncertain_submit_the_intent_is_looked_for_a_little_later() -> None:
    assert after_uncertain_submit(100.0) == BatchTimer(due=100.0 + RECONCILE_AFTER_S)


# --- polling ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("every", "last_done", "done", "spread", "every_after", "due"),
    [
        # progress: back to the poll interval
        (40.0, 3, 5, 1.0, 10.0, 110.0),
        # nothing moved: the interval stretches by half
        (10.0, 5, 5, 1.0, 15.0, 115.0),
        (60.0, 5, 5, 1.0, 80.0, 180.0),  # up to POLL_STRETCH intervals
        (80.0, 5, 5, 1.0, 80.0, 180.0),
        # jitter spreads the next poll, never below an interval
        (10.0, 3, 5, 1.1, 10.0, 111.0),
        (10.0, 3, 5, 0.9, 10.0, 109.0),
    ],
)
def test_after_poll(
    every: float, last_done: int, done: int, spread: float, every_after: float, due: float
) -> None:
    timer = BatchTimer(every=every, last_done=last_done, last_status="old")
    after = after_poll(timer, done, "in_progress 5/9", 100.0, S, spread)
    assert after == BatchTimer(
        due=pytest.approx(due), every=every_after, last_done=done, last_status="in_progress 5/9"
    )
    assert POLL_STRETCH * S.poll_s == 80.0


def test_after_poll_stretch_stops_at_the_maximum() -> None:
    slow = PlanSettings(poll_s=300.0)
    after = after_poll(BatchTimer(every=500.0, last_done=1), 1, "x", 0.0, slow)
    assert after.every == POLL_MAX_S


@pytest.mark.parametrize(
    ("every", "every_after"), [(10.0, 20.0), (20.0, 40.0), (400.0, POLL_MAX_S)]
)
def test_after_poll_error_the_interval_doubles(every: float, every_after: float) -> None:
    assert after_poll_error(BatchTimer(every=every), 100.0) == BatchTimer(
        every=every_after, due=100.0 + every_after
    )


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TransientProviderError("gone", provider="openai", status=404), PollError.LOST),
        (TransientProviderError("down", provider="openai", status=503), PollError.RETRY),
        (RateLimited("slow down", provider="openai"), PollError.RETRY),
        (AuthError("bad key", provider="openai", status=401), PollError.PAUSE),
        (QuotaExhausted("no money", provider="openai", status=429), PollError.PAUSE),
    ],
)
def test_poll_error(exc: Exception, expected: PollError) -> None:
    assert poll_error(exc) is expected  # type: ignore[arg-type]


def test_after_cancel_polls_at_once_and_remembers_the_cancel() -> None:
    timer = BatchTimer(due=500.0, every=10.0, cancel_sent=True)
    assert after_cancel(timer, 100.0) == BatchTimer(due=100.0, every=10.0, cancel_sent=True)


# --- reconcile --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timer", "result", "expected_timer", "decision"),
    [
        (None, "found", BatchTimer(due=100.0, every=10.0), Lookup.ADOPT),
        (BatchTimer(misses=1), "found", BatchTimer(due=100.0, every=10.0), Lookup.ADOPT),
        # the provider's list may lag: one miss is looked at again...
        (None, "missing", BatchTimer(every=10.0, misses=1, due=105.0), Lookup.LOOK_AGAIN),
        # ...two are not: the intent never reached the provider
        (
            BatchTimer(every=10.0, misses=1),
            "missing",
            BatchTimer(every=10.0, misses=1),
            Lookup.ABANDON,
        ),
        # the lookup itself failed: later, and the misses start again
        (BatchTimer(misses=1), "error", BatchTimer(due=105.0), Lookup.RETRY),
    ],
)
def test_after_lookup(
    timer: BatchTimer | None, result: str, expected_timer: BatchTimer, decision: Lookup
) -> None:
    assert after_lookup(timer, result, 100.0, S) == (expected_timer, decision)  # type: ignore[arg-type]


# --- collecting ---------------------------------------------------------------------------------


def _cut(certain: bool, signature: tuple[int, ...] = (100, 4)) -> IncompleteResults:
    return IncompleteResults(
        "cut", provider="openai", batch_id="b", certain=certain, signature=signature
    )


@pytest.mark.parametrize(
    ("timer", "certain", "signature", "refetch_in", "pauses", "downloads"),
    [
        # the first cut download: again after min(1 s, poll)
        (None, True, (100, 4), 1.0, False, 1),
        # the next ones: twice as long each time
        (BatchTimer(downloads=1, last_cut=(100, 4)), True, (100, 4), 2.0, False, 2),
        (BatchTimer(downloads=4, last_cut=(90, 3)), True, (100, 4), 16.0, False, 5),
        # one that only looked short and came back the same is taken as complete
        (BatchTimer(downloads=1, last_cut=(100, 4)), False, (100, 4), None, False, 2),
        # too many in a row: the run pauses
        (
            BatchTimer(downloads=DOWNLOAD_TRIES - 1, last_cut=(1,)),
            True,
            (100, 4),
            None,
            True,
            DOWNLOAD_TRIES,
        ),
    ],
)
def test_after_cut_download(
    timer: BatchTimer | None,
    certain: bool,
    signature: tuple[int, ...],
    refetch_in: float | None,
    pauses: bool,
    downloads: int,
) -> None:
    before = timer or BatchTimer(every=10.0, due=3.0)
    after, decision = after_cut_download(timer, _cut(certain, signature), 7, 100.0, S)
    assert decision.delay_s == refetch_in
    assert (decision.pause is not None) is pauses
    assert after.downloads == downloads
    assert after.last_cut == signature
    assert after.recorded == before.recorded + 7
    assert after.due == (100.0 + refetch_in if refetch_in is not None else before.due)


def test_after_a_failed_download_the_collection_is_tried_an_interval_later() -> None:
    assert after_collect_error(100.0, S) == BatchTimer(due=110.0)


# --- an operation that raised -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected", "every_after"),
    [
        (TransientProviderError("down", provider="openai", status=503), TaskError.RETRY, 40.0),
        (AuthError("bad key", provider="openai", status=401), TaskError.PAUSE, None),
        (UsageError("no key set for openai"), TaskError.PAUSE, None),
        (KeyError("a bug"), TaskError.CRASH, None),
    ],
)
def test_after_task_error(
    exc: BaseException, expected: TaskError, every_after: float | None
) -> None:
    timer = BatchTimer(every=20.0, due=0.0)
    after, decision = after_task_error(timer, exc, 100.0, S)
    assert decision is expected
    if every_after is None:
        assert after == timer
    else:
        assert after == BatchTimer(every=every_after, due=100.0 + every_after)


def test_after_task_error_never_retries_sooner_than_twice_the_poll_interval() -> None:
    after, _ = after_task_error(None, TransientProviderError("x", provider="openai"), 0.0, S)
    assert after == BatchTimer(every=20.0, due=20.0)


# --- the heartbeat ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timers", "expected"),
    [
        ({}, None),
        ({"a": BatchTimer(due=130.0)}, 30.0),
        ({"a": BatchTimer(due=130.0), "b": BatchTimer(due=110.0)}, 10.0),
        ({"a": BatchTimer(due=90.0)}, 0.0),  # overdue: now
        ({"c": BatchTimer(due=101.0)}, None),  # an intent is not polled
    ],
)
def test_next_poll_in(timers: dict[str, BatchTimer], expected: float | None) -> None:
    batches = [_b("a", SUB, 1.0), _b("b", SUB, 1.0), _b("c", INTENT)]
    assert next_poll_in(batches, timers, 100.0) == expected
