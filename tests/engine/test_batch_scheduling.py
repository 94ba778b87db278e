"""Batch scheduling through the in-process fake provider (``octopipe.testing``): what the
executor submits, polls, collects and abandons, and when, with no HTTP. The decisions
themselves are tabled in ``test_batch_plan.py``; the vendors' wire formats are exercised in
``test_batch_engine.py`` on the emulator."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from octopipe.core.states import RunStatus, UnitStepState
from octopipe.errors import AuthError, QuotaExhausted, RateLimited, TransientProviderError
from octopipe.providers.batch_base import BatchHandle, BatchRequestLine
from octopipe.testing import FakeBatchProvider
from support.batch import batch_rows, drive_fake
from support.realtime import (
    check_ledger,
    copy_example,
    fast_retries,
    ledger_rows,
    make_run,
    set_keys,
    walk_answer,
)


def small_walk(tmp: Path, repeat: int, chunk: int, **keys: Any) -> Path:
    def edit(config: dict[str, Any]) -> None:
        fast_retries(config)
        set_keys(config, "processing.repeat", repeat)
        set_keys(config, "processing.chunk_size", chunk)
        for key, value in keys.items():
            set_keys(config, key.replace("__", "."), value)

    return copy_example("random_walk", tmp, edit)


def answer(line: BatchRequestLine) -> Any:
    return walk_answer(SimpleNamespace(prompt=line.request.prompt))  # type: ignore[arg-type]


def test_units_are_packed_by_chunk_size_and_each_batch_collected_once(tmp_path: Path) -> None:
    paths = make_run(small_walk(tmp_path, repeat=24, chunk=10), tmp_path / "runs", mode="batch")
    fake = FakeBatchProvider(answer=answer, polls_to_finish=2)
    outcome = drive_fake(paths, fake)

    assert outcome.status is RunStatus.COMPLETE
    assert check_ledger(paths).counts[1][UnitStepState.VALID] == 24
    assert sorted(len(b.lines) for b in fake.batches.values()) == [4, 10, 10]
    assert {r["state"] for r in batch_rows(paths)} == {"collected"}
    # every batch polled until it ended (twice), then collected exactly once
    polls = Counter(c.batch_id for c in fake.calls("poll"))
    assert polls == dict.fromkeys(fake.batches, 2)
    assert sorted(c.batch_id for c in fake.calls("collect")) == sorted(fake.batches)


def test_no_more_batches_open_than_max_inflight_batches(tmp_path: Path) -> None:
    pipeline = small_walk(tmp_path, repeat=12, chunk=3, api__max_inflight_batches=2)
    paths = make_run(pipeline, tmp_path / "runs", mode="batch")
    fake = FakeBatchProvider(answer=answer, polls_to_finish=3)
    assert drive_fake(paths, fake).status is RunStatus.COMPLETE

    open_now, most = 0, 0
    for call in fake.history:
        if call.operation == "submit":
            open_now += 1
            most = max(most, open_now)
        elif call.operation == "collect":
            open_now -= 1
    assert len(fake.batches) == 4 and most == 2


def test_a_rate_limited_submit_is_retried_without_using_an_attempt(tmp_path: Path) -> None:
    paths = make_run(small_walk(tmp_path, repeat=4, chunk=50), tmp_path / "runs", mode="batch")
    fake = FakeBatchProvider(answer=answer)
    fake.fail_next("submit", RateLimited("slow down", provider="fake", retry_after=0.05))
    outcome = drive_fake(paths, fake)

    assert outcome.status is RunStatus.COMPLETE
    assert Counter(r["state"] for r in batch_rows(paths)) == {"abandoned": 1, "collected": 1}
    assert ledger_rows(paths, "SELECT MAX(attempt_no) FROM attempts WHERE step_idx = 1") == [(1,)]
    assert check_ledger(paths).counts[1][UnitStepState.VALID] == 4
    assert len(fake.calls("submit")) == 2 and len(fake.batches) == 1
    assert "rate limited on submit" in paths.log.read_text()


@pytest.mark.parametrize(
    "error",
    [
        QuotaExhausted("you have no credit left", provider="fake", status=429),
        AuthError("invalid api key", provider="fake", status=401),
    ],
)
def test_quota_or_auth_errors_on_submit_pause_the_run_with_the_reason(
    tmp_path: Path, error: Exception
) -> None:
    paths = make_run(small_walk(tmp_path, repeat=4, chunk=50), tmp_path / "runs", mode="batch")
    fake = FakeBatchProvider(answer=answer)
    fake.fail_next("submit", error)  # type: ignore[arg-type]
    outcome = drive_fake(paths, fake)

    assert outcome.status is RunStatus.PAUSED
    assert outcome.exit_code == 6  # the README's code for auth/quota, as in realtime
    assert outcome.reason == str(error)
    check = check_ledger(paths, finished=False)
    assert check.counts[1][UnitStepState.PENDING] == 4  # nothing lost, no attempt used
    assert [r["state"] for r in batch_rows(paths)] == ["abandoned"]
    assert fake.batches == {}


class Forgetful(FakeBatchProvider):
    """Forgets its first batch as soon as it has taken it (deleted, or another account)."""

    async def submit(self, *args: Any, **kwargs: Any) -> BatchHandle:
        handle = await super().submit(*args, **kwargs)
        if len(self.calls("submit")) == 1:
            self.forget(handle.provider_batch_id)
        return handle


def test_a_batch_the_provider_forgot_is_resent_without_charging_its_units(
    tmp_path: Path,
) -> None:
    paths = make_run(small_walk(tmp_path, repeat=5, chunk=50), tmp_path / "runs", mode="batch")
    fake = Forgetful(answer=answer)
    outcome = drive_fake(paths, fake)

    assert outcome.status is RunStatus.COMPLETE
    assert len(fake.calls("submit")) == 2  # the first was taken as lost, its units sent again
    assert ledger_rows(paths, "SELECT MAX(attempt_no) FROM attempts WHERE step_idx = 1") == [(1,)]
    assert check_ledger(paths).counts[1][UnitStepState.VALID] == 5
    assert "not found at the provider" in paths.log.read_text()


def test_a_poll_that_fails_is_tried_again_later_not_at_once(tmp_path: Path) -> None:
    paths = make_run(small_walk(tmp_path, repeat=3, chunk=50), tmp_path / "runs", mode="batch")
    fake = FakeBatchProvider(answer=answer, polls_to_finish=1)
    for _ in range(2):
        fake.fail_next("poll", TransientProviderError("busy", provider="fake", status=503))
    outcome = drive_fake(paths, fake)

    assert outcome.status is RunStatus.COMPLETE
    polls = [c for c in fake.history if c.operation == "poll"]
    assert len(polls) == 3 and len(fake.batches) == 1  # two failures, then the answer
    assert check_ledger(paths).counts[1][UnitStepState.VALID] == 3


def test_failed_answers_are_retried_in_batches_of_their_own(tmp_path: Path) -> None:
    paths = make_run(small_walk(tmp_path, repeat=6, chunk=50), tmp_path / "runs", mode="batch")
    fake = FakeBatchProvider(answer=answer)
    fake.enqueue("not json", "{}")  # the first two requests get answers that fail
    outcome = drive_fake(paths, fake)

    assert outcome.status is RunStatus.COMPLETE
    assert [len(b.lines) for b in fake.batches.values()] == [6, 2]
    first = fake.batches["fakebatch_1"].lines[:2]
    assert [line.custom_id for line in fake.batches["fakebatch_2"].lines] == sorted(
        line.custom_id for line in first
    )
    assert check_ledger(paths).counts[1][UnitStepState.VALID] == 6


class TakesThenTimesOut(FakeBatchProvider):
    """Takes its first batch, then the answer is lost on the way back (a timeout)."""

    async def submit(self, *args: Any, **kwargs: Any) -> BatchHandle:
        handle = await super().submit(*args, **kwargs)
        if len(self.calls("submit")) == 1:
            raise TransientProviderError("read timed out", provider="fake")
        return handle


def test_an_intent_whose_batch_was_taken_is_adopted_not_resubmitted(tmp_path: Path) -> None:
    paths = make_run(small_walk(tmp_path, repeat=4, chunk=50), tmp_path / "runs", mode="batch")
    fake = TakesThenTimesOut(answer=answer)
    outcome = drive_fake(paths, fake)

    assert outcome.status is RunStatus.COMPLETE
    assert len(fake.batches) == 1 and len(fake.calls("submit")) == 1
    assert [c.detail["value"] for c in fake.calls("find")] == [batch_rows(paths)[0]["local_id"]]
    assert [r["provider_batch_id"] for r in batch_rows(paths)] == ["fakebatch_1"]
    assert check_ledger(paths).counts[1][UnitStepState.VALID] == 4
    assert "found at the provider: fakebatch_1" in paths.log.read_text()


def test_an_intent_that_never_reached_the_provider_is_looked_for_twice_then_resubmitted(
    tmp_path: Path,
) -> None:
    paths = make_run(small_walk(tmp_path, repeat=4, chunk=50), tmp_path / "runs", mode="batch")
    fake = FakeBatchProvider(answer=answer)
    fake.fail_next("submit", TransientProviderError("bad gateway", provider="fake", status=502))
    outcome = drive_fake(paths, fake)

    assert outcome.status is RunStatus.COMPLETE
    rows = batch_rows(paths)
    assert [r["state"] for r in rows] == ["abandoned", "collected"]
    # the provider's list may lag: one miss is looked at again before the intent is dropped
    assert [c.detail["value"] for c in fake.calls("find")] == [rows[0]["local_id"]] * 2
    assert ledger_rows(paths, "SELECT MAX(attempt_no) FROM attempts WHERE step_idx = 1") == [(1,)]
    assert "never reached the provider; units requeued" in paths.log.read_text()


class FirstBatchStuck(FakeBatchProvider):
    """Its first batch never ends by itself; the others end at their first poll."""

    async def poll(self, handle: BatchHandle) -> Any:
        if handle.provider_batch_id != "fakebatch_1":
            self.finish(handle.provider_batch_id)
        return await super().poll(handle)


def test_a_batch_past_its_deadline_is_cancelled_once_and_its_units_resubmitted(
    tmp_path: Path,
) -> None:
    pipeline = small_walk(tmp_path, repeat=5, chunk=50, api__batch__deadline_hours=0.0003)
    paths = make_run(pipeline, tmp_path / "runs", mode="batch")
    fake = FirstBatchStuck(answer=answer, polls_to_finish=None)
    outcome = drive_fake(paths, fake)

    assert outcome.status is RunStatus.COMPLETE
    assert [c.batch_id for c in fake.calls("cancel")] == ["fakebatch_1"]
    assert fake.batches["fakebatch_1"].state == "cancelled"
    assert [len(b.lines) for b in fake.batches.values()] == [5, 5]  # none had run: all again
    # requests that never ran cost their units no attempt
    assert ledger_rows(paths, "SELECT MAX(attempt_no) FROM attempts WHERE step_idx = 1") == [(1,)]
    assert check_ledger(paths).counts[1][UnitStepState.VALID] == 5
    assert "[CANCEL] batch" in paths.log.read_text()
