"""Batch mode end to end: pipelines driven through each vendor's batch API on the emulator.

What needs only scheduling (429 or auth on submit, ...) runs on the in-process fake provider
in ``test_batch_scheduling.py``."""

from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from octopipe.core.states import RunStatus, UnitStepState
from octopipe.emulator import EmulatorConfig, EmulatorRequest, EmulatorThread
from octopipe.engine.queries import run_status
from support.batch import (
    batch_rows,
    batch_units_of,
    drive_batch,
    fruit_answer,
    fruit_children,
    fruit_pipeline,
)
from support.realtime import (
    VENDOR_MODELS,
    VENDORS,
    check_ledger,
    copy_example,
    fast_retries,
    ledger_rows,
    make_run,
    set_keys,
    step_states,
    walk_answer,
)


def small_walk(tmp: Path, repeat: int = 24, chunk: int = 10, **keys: Any) -> Path:
    def edit(config: dict[str, Any]) -> None:
        fast_retries(config)
        set_keys(config, "processing.repeat", repeat)
        set_keys(config, "processing.chunk_size", chunk)
        for key, value in keys.items():
            set_keys(config, key.replace("__", "."), value)

    return copy_example("random_walk", tmp, edit)


@pytest.mark.parametrize("vendor", VENDORS)
def test_round_trip_through_each_vendor(tmp_path: Path, vendor: str) -> None:
    paths = make_run(small_walk(tmp_path, repeat=24, chunk=10), tmp_path / "runs", mode="batch")
    config = EmulatorConfig(answer_fn=walk_answer, batch_delay_s=0.1)
    result = drive_batch(paths, f"fake:{vendor}", VENDOR_MODELS[vendor], emulator_config=config)

    assert result.outcome.status is RunStatus.COMPLETE
    check = check_ledger(paths)
    units = 24  # one track in items.yaml, 24 repeats
    assert check.counts[1][UnitStepState.VALID] == units
    rows = batch_rows(paths)
    # chunk_size 10 is the upper bound: 24 units -> 3 batches, every one collected
    assert sorted(r["n_units"] for r in rows) == [4, 10, 10]
    assert {r["state"] for r in rows} == {"collected"}
    assert result.stats["batches_created"] == {vendor: len(rows)}
    # every attempt is a batch attempt priced at batch rates (check_ledger repriced each)
    modes = ledger_rows(paths, "SELECT mode, COUNT(*) FROM attempts WHERE step_idx = 1 GROUP BY 1")
    assert modes == [("batch", units)]
    assert check.cost_usd > 0
    assert abs(sum(r["actual_usd"] for r in rows) - check.cost_usd) < 1e-9
    view = run_status(paths)
    assert view.batch_counts == {"collected": len(rows)} and view.open_batches == []


def test_batch_cost_is_half_the_realtime_cost_of_the_same_answers(tmp_path: Path) -> None:
    pipeline = small_walk(tmp_path, repeat=10, chunk=50)
    config = EmulatorConfig(answer_fn=walk_answer)
    batch_run = make_run(pipeline, tmp_path / "runs", "b", mode="batch")
    drive_batch(batch_run, emulator_config=config)
    realtime_run = make_run(pipeline, tmp_path / "runs", "r", mode="realtime")
    drive_batch(realtime_run, emulator_config=config, mode="realtime")
    batch_cost = check_ledger(batch_run).cost_usd
    realtime_cost = check_ledger(realtime_run).cost_usd
    assert batch_cost > 0
    assert batch_cost == pytest.approx(realtime_cost * 0.5, rel=1e-9)


class FirstTimeWrong:
    """Answers units whose number is divisible by 3 wrongly the first time they are asked."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, request: EmulatorRequest) -> Any:
        answer = fruit_answer(request)
        with self.lock:
            self.seen[request.prompt] += 1
            first = self.seen[request.prompt] == 1
        if (
            first
            and "description" in answer
            and int(answer["description"][11:].split("x")[0]) % 3 == 0
        ):
            return {"description": "about something else"}
        return answer


@pytest.mark.parametrize("vendor", VENDORS)
def test_fan_out_between_two_batch_steps_and_retry_of_only_the_failed_units(
    tmp_path: Path, vendor: str
) -> None:
    units = 12
    paths = make_run(
        fruit_pipeline(tmp_path / "fruit", units, chunk=5), tmp_path / "runs", mode="batch"
    )
    wrong = FirstTimeWrong()
    result = drive_batch(
        paths,
        f"fake:{vendor}",
        VENDOR_MODELS[vendor],
        emulator_config=EmulatorConfig(answer_fn=wrong),
    )

    assert result.outcome.status is RunStatus.COMPLETE
    check = check_ledger(paths)
    children = fruit_children(units)
    assert check.counts[0][UnitStepState.VALID] == units
    assert check.counts[2][UnitStepState.VALID] == children
    described = step_states(paths, "describe")
    assert len(described) == children and set(described.values()) == {UnitStepState.VALID}

    # The children of units 0, 3, 6, 9 failed their first answer; they and only they went into
    # a later batch, and each needed exactly two attempts.
    retried = sorted(u for u in described if int(u.split("__")[0][1:]) % 3 == 0)
    assert retried, "the answer function made no mistakes"
    rows = [r for r in batch_rows(paths) if r["step_idx"] == 2]
    later = [set(batch_units_of(paths, r["local_id"])) for r in rows]
    retry_batches = [b for b in later if b <= set(retried)]
    assert set().union(*retry_batches) == set(retried)
    # and no batch mixes retries with first attempts
    numbers = ledger_rows(
        paths,
        "SELECT b.local_id, COUNT(DISTINCT a.attempt_no) FROM attempts a "
        "JOIN batches b ON b.id = a.batch_id WHERE a.step_idx = 2 GROUP BY b.local_id",
    )
    assert numbers and all(n == 1 for _, n in numbers), numbers
    attempts = dict(
        ledger_rows(
            paths,
            "SELECT u.unit_id, COUNT(*) FROM attempts a JOIN units u ON u.uid = a.uid "
            "WHERE a.step_idx = 2 GROUP BY u.unit_id",
        )
    )
    assert {u for u, n in attempts.items() if n == 2} == set(retried)
    assert all(n == 1 for u, n in attempts.items() if u not in retried)


def test_cost_cap_counts_batches_in_flight_and_pauses(tmp_path: Path) -> None:
    paths = make_run(small_walk(tmp_path, repeat=400, chunk=10), tmp_path / "runs", mode="batch")
    config = EmulatorConfig(answer_fn=walk_answer, batch_delay_s=0.2)
    # A first batch of 10 is estimated at ~$0.0007 (200 answer tokens assumed per request):
    # with a $0.0016 cap two batches may be at the provider together, never a third.
    cap = 0.0016
    result = drive_batch(paths, emulator_config=config, max_cost_usd=cap)

    assert result.outcome.status is RunStatus.PAUSED
    assert "cost cap" in (result.outcome.reason or "")
    rows = batch_rows(paths)
    assert rows and all(r["state"] == "collected" for r in rows)
    first_two = rows[:2]
    assert sum(r["estimate_usd"] for r in first_two) <= cap
    check = check_ledger(paths, finished=False)
    assert 0 < check.cost_usd <= cap
    assert check.counts[1].get(UnitStepState.PENDING, 0) > 0  # the rest waits for more budget


def test_a_run_resumed_with_batches_at_the_provider_collects_them(tmp_path: Path) -> None:
    paths = make_run(small_walk(tmp_path, repeat=8, chunk=3), tmp_path / "runs", mode="batch")
    config = EmulatorConfig(answer_fn=walk_answer, batch_delay_s=1.0)
    with EmulatorThread(config) as emulator:
        first = drive_batch(paths, "fake:openai", emulator=emulator, timeout_s=0.5)
        assert first.outcome.status is RunStatus.PAUSED
        open_rows = [r for r in batch_rows(paths) if r["state"] == "submitted"]
        assert open_rows, "no batch was at the provider when the run paused"
        view = run_status(paths)
        assert {b["state"] for b in view.open_batches} == {"submitted"}
        in_flight = check_ledger(paths, finished=False, after_kill=True)
        assert in_flight.counts[1].get(UnitStepState.IN_FLIGHT, 0) == sum(
            r["n_units"] for r in open_rows
        )

        second = drive_batch(paths, "fake:openai", emulator=emulator)
        assert second.outcome.status is RunStatus.COMPLETE
        created = emulator.stats()["batches_created"]["openai"]
    check = check_ledger(paths)
    assert check.counts[1][UnitStepState.VALID] == 8
    assert created == len(batch_rows(paths))  # nothing submitted twice


def test_switching_to_realtime_still_collects_submitted_batches(tmp_path: Path) -> None:
    pipeline = small_walk(tmp_path, repeat=12, chunk=3, api__max_inflight_batches=2)
    paths = make_run(pipeline, tmp_path / "runs", mode="batch")
    config = EmulatorConfig(answer_fn=walk_answer, batch_delay_s=1.0)
    with EmulatorThread(config) as emulator:
        drive_batch(paths, "fake:openai", emulator=emulator, timeout_s=0.3)
        submitted = {r["local_id"] for r in batch_rows(paths) if r["state"] == "submitted"}
        assert submitted
        batched = {u for b in submitted for u in batch_units_of(paths, b)}
        result = drive_batch(paths, "fake:openai", emulator=emulator, mode="realtime")
    assert result.outcome.status is RunStatus.COMPLETE
    check_ledger(paths)
    modes = dict(
        ledger_rows(
            paths,
            "SELECT u.unit_id, a.mode FROM attempts a JOIN units u ON u.uid = a.uid "
            "WHERE a.step_idx = 1",
        )
    )
    assert {modes[u] for u in batched} == {"batch"}
    assert {m for u, m in modes.items() if u not in batched} == {"realtime"}
    assert {r["state"] for r in batch_rows(paths) if r["local_id"] in submitted} == {"collected"}


def test_an_intent_that_never_reached_the_provider_is_abandoned_and_requeued(
    tmp_path: Path,
) -> None:
    from octopipe.store.ledger import Ledger

    paths = make_run(small_walk(tmp_path, repeat=4, chunk=50), tmp_path / "runs", mode="batch")
    first = drive_batch(
        paths, emulator_config=EmulatorConfig(answer_fn=walk_answer), timeout_s=0.001
    )
    assert first.outcome.status is RunStatus.PAUSED
    # A crash right after the intent's commit: the intent is recorded, nothing was sent.
    with Ledger.open(paths.ledger) as ledger:
        pending = ledger.claim_pending(1, 100)
        assert pending
        ledger.create_batch_intent(
            "b09999-deadbeef",
            1,
            provider="fake",
            model="gpt-4o-mini",
            uids=[u.uid for u in pending],
            content_hash="x",
        )
    result = drive_batch(paths, emulator_config=EmulatorConfig(answer_fn=walk_answer))
    assert result.outcome.status is RunStatus.COMPLETE
    check_ledger(paths)
    states = {r["local_id"]: r["state"] for r in batch_rows(paths)}
    assert states["b09999-deadbeef"] == "abandoned"
    assert "never reached the provider" in paths.log.read_text()


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
def test_an_intent_whose_batch_was_created_is_adopted_not_resubmitted(
    tmp_path: Path, vendor: str
) -> None:
    """The crash between the provider's answer and the ledger's record: on restart the batch is
    found by the intent id in its metadata and collected; no second batch is created."""
    import asyncio

    from octopipe.engine.batch_collect import custom_id, run_tag
    from octopipe.providers.base import LLMRequest, ProviderSettings
    from octopipe.providers.batch_base import INTENT_KEY, BatchRequestLine
    from octopipe.providers.catalog import make_batch_provider
    from octopipe.store.ledger import Ledger

    paths = make_run(small_walk(tmp_path, repeat=4, chunk=50), tmp_path / "runs", mode="batch")
    drive_batch(paths, emulator_config=EmulatorConfig(answer_fn=walk_answer), timeout_s=0.001)
    with EmulatorThread(EmulatorConfig(answer_fn=walk_answer)) as emulator:
        with Ledger.open(paths.ledger) as ledger:
            units = ledger.claim_pending(1, 100)
            ledger.create_batch_intent(
                "b00042-cafe",
                1,
                provider="fake",
                model="gpt-4o-mini",
                uids=[u.uid for u in units],
                content_hash="x",
            )
            info = ledger.run_info()
        tag = run_tag(info.name, info.created_at)
        settings = ProviderSettings(vendor, "k", emulator.base_url_for(vendor))

        async def send() -> None:
            client = make_batch_provider(settings)
            lines = [
                BatchRequestLine(
                    custom_id(tag, u.uid),
                    LLMRequest(
                        unit_id=u.unit_id,
                        step="report",
                        prompt=_report_prompt(u.record),
                        model="gpt-4o-mini",
                    ),
                )
                for u in units
            ]
            await client.submit(lines, model="gpt-4o-mini", metadata={INTENT_KEY: "b00042-cafe"})
            await client.aclose()

        asyncio.run(send())
        result = drive_batch(paths, f"fake:{vendor}", emulator=emulator)
        created = emulator.stats()["batches_created"][vendor]
    assert result.outcome.status is RunStatus.COMPLETE
    check_ledger(paths)
    rows = batch_rows(paths)
    assert [r["state"] for r in rows] == ["collected"] and created == 1
    assert "found at the provider" in paths.log.read_text()


def _report_prompt(record: dict[str, Any]) -> str:
    trail = ", ".join(str(x) for x in record["trail"])
    return f"The token moved through these squares, in order:\n{trail}\n"


def test_a_batch_past_its_deadline_is_cancelled_and_the_rest_runs_in_realtime(
    tmp_path: Path,
) -> None:
    pipeline = small_walk(
        tmp_path,
        repeat=6,
        chunk=50,
        api__batch__deadline_hours=0.0003,  # about a second
        api__batch__fallback_to_realtime=True,
    )
    paths = make_run(pipeline, tmp_path / "runs", mode="batch")
    config = EmulatorConfig(answer_fn=walk_answer, batch_delay_s=60)
    result = drive_batch(paths, emulator_config=config)

    assert result.outcome.status is RunStatus.COMPLETE
    check = check_ledger(paths)
    assert check.counts[1][UnitStepState.VALID] == 6
    rows = batch_rows(paths)
    assert len(rows) == 1 and rows[0]["state"] == "collected"
    modes = ledger_rows(paths, "SELECT mode, COUNT(*) FROM attempts WHERE step_idx = 1 GROUP BY 1")
    assert dict(modes).get("realtime", 0) >= 1  # what the cancelled batch had not finished
    assert sum(n for _, n in modes) == 6  # each unit answered once: none lost, none twice
    log = paths.log.read_text()
    assert "[CANCEL] batch" in log and "[FALLBACK] step report" in log
    assert result.stats["batches_created"] == {"openai": 1}


def test_progress_shows_open_batches_and_the_heartbeat_names_them(tmp_path: Path) -> None:
    from octopipe.cli.progress_view import one_line
    from octopipe.engine import batch as batch_module

    paths = make_run(small_walk(tmp_path, repeat=6, chunk=3), tmp_path / "runs", mode="batch")
    snapshots: list[Any] = []
    old = batch_module.HEARTBEAT_S
    batch_module.HEARTBEAT_S = 0.2
    try:
        config = EmulatorConfig(answer_fn=walk_answer, batch_delay_s=1.0)
        result = drive_batch(paths, emulator_config=config, progress=snapshots.append)
    finally:
        batch_module.HEARTBEAT_S = old
    assert result.outcome.status is RunStatus.COMPLETE
    # chunk 3, 6 units: two batches open at once (their state depends on when the snapshot
    # was taken: intent, submitted or completed), none left at the end
    shown = next(s for s in snapshots if sum(s.batches.values()) == 2)
    listed = ", ".join(f"{n} {state}" for state, n in sorted(shown.batches.items()))
    assert f"open batches: {listed}" in one_line(shown)
    assert snapshots[-1].batches == {}
    heartbeat = [x for x in paths.log.read_text().splitlines() if "[HEARTBEAT]" in x]
    # every heartbeat counts the batches open then (under load one may come before the
    # second batch is packed); once both are at the provider, it names both with their status
    assert heartbeat and all(re.search(r"\] [12] open batch\(es\): b0000", x) for x in heartbeat)
    both = [x for x in heartbeat if "2 open batch(es)" in x]
    assert both and any(x.count("in_progress 0/3") == 2 for x in both)


def test_a_provider_without_a_batch_api_is_refused_before_the_run_starts(tmp_path: Path) -> None:
    from octopipe.errors import UsageError
    from octopipe.store.ledger import Ledger

    pipeline = small_walk(
        tmp_path,
        repeat=2,
        api__provider="openai-compatible",
        api__model="local-model",
        api__base_url="http://127.0.0.1:9",
    )
    paths = make_run(pipeline, tmp_path / "runs", mode="batch")
    with pytest.raises(UsageError, match="has no batch API"):
        drive_batch(paths, provider=None, model=None)
    with Ledger.open(paths.ledger, readonly=True) as ledger:
        assert ledger.run_info().status is RunStatus.PENDING  # untouched


def test_batches_lost_with_an_in_process_emulator_are_resubmitted_without_cost(
    tmp_path: Path,
) -> None:
    """`--provider fake` without OCTOPIPE_EMULATOR_URL: the emulator dies with the runner, so a
    paused run's batches are gone when it resumes. They are sent again; no unit is charged."""
    paths = make_run(small_walk(tmp_path, repeat=6, chunk=3), tmp_path / "runs", mode="batch")
    slow = EmulatorConfig(answer_fn=walk_answer, batch_delay_s=30)
    first = drive_batch(paths, emulator_config=slow, timeout_s=0.5)
    assert first.outcome.status is RunStatus.PAUSED
    assert {r["state"] for r in batch_rows(paths)} == {"submitted"}
    second = drive_batch(paths, emulator_config=EmulatorConfig(answer_fn=walk_answer))
    assert second.outcome.status is RunStatus.COMPLETE
    check = check_ledger(paths)
    assert check.counts[1][UnitStepState.VALID] == 6
    assert ledger_rows(paths, "SELECT MAX(attempt_no) FROM attempts WHERE step_idx = 1") == [(1,)]
    assert "not found at the provider" in paths.log.read_text()


def test_after_a_switch_to_realtime_the_cost_cap_counts_the_open_batches(tmp_path: Path) -> None:
    pipeline = small_walk(tmp_path, repeat=12, chunk=3, api__max_inflight_batches=2)
    paths = make_run(pipeline, tmp_path / "runs", mode="batch")
    config = EmulatorConfig(answer_fn=walk_answer, batch_delay_s=3.0)
    with EmulatorThread(config) as emulator:
        drive_batch(paths, "fake:openai", emulator=emulator, timeout_s=0.3)
        open_rows = [r for r in batch_rows(paths) if r["state"] == "submitted"]
        committed = sum(r["estimate_usd"] for r in open_rows)
        assert open_rows and committed > 0
        # a cap below what the open batches are expected to cost: realtime must not start
        result = drive_batch(
            paths, "fake:openai", emulator=emulator, mode="realtime", max_cost_usd=committed / 2
        )
    assert result.outcome.status is RunStatus.PAUSED
    assert "cost cap" in (result.outcome.reason or "")
    realtime = ledger_rows(paths, "SELECT COUNT(*) FROM attempts WHERE mode = 'realtime'")
    assert realtime == [(0,)]
