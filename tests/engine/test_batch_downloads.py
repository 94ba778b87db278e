"""Cut results downloads never duplicate work or lose money.

A batch's results file that arrives cut short (an interrupted download, a proxy closing early)
is not the truth about the batch: the provider answered, and charged, every request. The run
must fetch the results again -- never resubmit the requests whose lines were cut off -- so that
no unit is answered twice and the ledger's cost equals the provider's usage at batch prices.
Only a line genuinely absent from a complete download is a dropped line, retried.

Everything goes through each vendor's real SDK to the emulator, which cuts downloads on
purpose (``batch_truncate_*``). Gemini is forced onto file-based jobs (inline results come
inside the job's JSON and cannot be cut without the whole answer failing to parse).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from octopipe.core.costs import cost_usd
from octopipe.core.registry import load_registry
from octopipe.core.states import RunStatus, UnitStepState
from octopipe.emulator import EmulatorConfig, EmulatorThread
from octopipe.engine import providers_setup
from octopipe.engine.batch_plan import DOWNLOAD_TRIES, Refetch, after_incomplete
from octopipe.engine.paths import RunPaths
from octopipe.errors import IncompleteResults
from octopipe.providers.base import ProviderSettings
from octopipe.providers.batch_base import BatchProvider
from octopipe.providers.batch_gemini import GeminiBatchProvider
from octopipe.providers.catalog import make_batch_provider
from support.batch import batch_rows, drive_batch
from support.batch_crash import _usage
from support.realtime import (
    VENDOR_MODELS,
    VENDORS,
    check_ledger,
    copy_example,
    fast_retries,
    ledger_rows,
    make_run,
    set_keys,
    walk_answer,
)


@pytest.fixture(autouse=True)
def gemini_through_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gemini batches as file-based jobs, whose results file can be cut like the others."""

    def build(settings: ProviderSettings) -> BatchProvider:
        if settings.provider == "gemini":
            return GeminiBatchProvider(settings, inline_max_bytes=1)
        return make_batch_provider(settings)

    monkeypatch.setattr(providers_setup, "make_batch_provider", build)


def walk(tmp: Path, units: int, chunk: int) -> Path:
    def edit(config: dict[str, Any]) -> None:
        fast_retries(config)
        set_keys(config, "processing.repeat", units)
        set_keys(config, "processing.chunk_size", chunk)
        set_keys(config, "api.max_inflight_batches", 20)

    return copy_example("random_walk", tmp, edit)


def sent_per_unit(emulator: EmulatorThread) -> Counter[str]:
    """How many times the provider received each request id (across all its batches)."""
    jobs = emulator.emulator.core.batches.jobs.values()
    return Counter(key for job in jobs for key in job.keys)


def provider_usage_usd(emulator: EmulatorThread, model: str) -> float:
    """What the provider answered -- and charged -- at batch prices."""
    registry = load_registry()
    total = 0.0
    for job in emulator.emulator.core.batches.jobs.values():
        for outcome in job.outcomes or []:
            if outcome.reply is not None and outcome.reply.status == 200:
                cost = cost_usd(registry, "fake", model, _usage(outcome.reply.body), "batch")
                assert cost is not None
                total += cost
    return total


def attempts_per_unit(paths: RunPaths) -> Counter[int]:
    rows = ledger_rows(paths, "SELECT COUNT(*) FROM attempts WHERE step_idx = 1 GROUP BY uid")
    return Counter(n for (n,) in rows)


def run(
    tmp: Path, vendor: str, config: EmulatorConfig, units: int = 40, chunk: int = 10
) -> tuple[RunPaths, Any, EmulatorThread]:
    paths = make_run(walk(tmp, units, chunk), tmp / "runs", mode="batch")
    with EmulatorThread(config) as emulator:
        result = drive_batch(paths, f"fake:{vendor}", VENDOR_MODELS[vendor], emulator=emulator)
    return paths, result, emulator


@pytest.mark.parametrize("vendor", VENDORS)
def test_cut_downloads_are_fetched_again_not_resubmitted(tmp_path: Path, vendor: str) -> None:
    # the first download of every batch's results is cut in the middle of its last line
    config = EmulatorConfig(answer_fn=walk_answer, batch_truncate_schedule=(True,) * 4)
    paths, result, emulator = run(tmp_path, vendor, config, units=40, chunk=10)

    assert result.outcome.status is RunStatus.COMPLETE
    check = check_ledger(paths)
    assert check.counts[1][UnitStepState.VALID] == 40
    assert set(sent_per_unit(emulator).values()) == {1}  # no request sent twice
    assert attempts_per_unit(paths) == {1: 40}  # no unit answered twice
    assert len(batch_rows(paths)) == 4  # no batch of resubmitted units
    assert abs(check.cost_usd - provider_usage_usd(emulator, VENDOR_MODELS[vendor])) < 1e-12
    assert emulator.stats()["batch_downloads_cut"] == 4
    log = paths.log.read_text()
    assert "are incomplete" in log and "fetching them again" in log
    assert "missing from the results" not in log


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_ledger_cost_equals_the_provider_usage_when_many_downloads_are_cut(
    tmp_path: Path, vendor: str
) -> None:
    # a share of all downloads cut, in both ways a download breaks: a body that ends early,
    # and a connection that closes before the announced Content-Length
    for style in ("clean", "abort"):
        config = EmulatorConfig(
            answer_fn=walk_answer,
            batch_truncate_rate=0.4,
            batch_truncate_style=style,
            seed=2,
        )
        paths, result, emulator = run(tmp_path / style, vendor, config, units=120, chunk=8)

        assert result.outcome.status is RunStatus.COMPLETE, style
        check = check_ledger(paths)
        assert check.counts[1][UnitStepState.VALID] == 120, style
        assert emulator.stats()["batch_downloads_cut"] >= 3, style
        assert set(sent_per_unit(emulator).values()) == {1}, style
        assert attempts_per_unit(paths) == {1: 120}, style
        usage = provider_usage_usd(emulator, VENDOR_MODELS[vendor])
        assert abs(check.cost_usd - usage) < 1e-12, (style, check.cost_usd, usage)


def test_a_download_that_stays_cut_pauses_the_run_and_marks_nothing_missing(
    tmp_path: Path,
) -> None:
    # every download of the batch's results is cut, more times than the run will try
    config = EmulatorConfig(
        answer_fn=walk_answer, batch_truncate_schedule=(True,), batch_truncate_downloads=1000
    )
    paths = make_run(walk(tmp_path, 6, 10), tmp_path / "runs", mode="batch")
    with EmulatorThread(config) as emulator:
        paused = drive_batch(paths, "fake:openai", VENDOR_MODELS["openai"], emulator=emulator)
        tries = emulator.stats()["requests"]["openai.files.content"]
        held = check_ledger(paths, finished=False, after_kill=True)
        (row,) = batch_rows(paths)

    assert paused.outcome.status is RunStatus.PAUSED
    reason = paused.outcome.reason or ""
    assert f"batch {row['local_id']}" in reason and "incomplete" in reason, reason
    assert 3 <= tries <= 10  # bounded: fetched again a few times, then stopped
    assert row["state"] == "completed"  # not collected: its results are still to be read
    assert held.counts[1][UnitStepState.VALID] == 5  # every complete line was recorded
    assert held.counts[1][UnitStepState.IN_FLIGHT] == 1  # the cut one: still the batch's
    assert attempts_per_unit(paths) == {1: 5}  # nothing recorded as missing or failed


def test_resuming_after_a_download_that_stayed_cut_collects_the_rest(tmp_path: Path) -> None:
    config = EmulatorConfig(
        answer_fn=walk_answer, batch_truncate_schedule=(True,), batch_truncate_downloads=6
    )
    paths = make_run(walk(tmp_path, 6, 10), tmp_path / "runs", mode="batch")
    with EmulatorThread(config) as emulator:
        paused = drive_batch(paths, "fake:openai", VENDOR_MODELS["openai"], emulator=emulator)
        assert paused.outcome.status is RunStatus.PAUSED
        resumed = drive_batch(paths, "fake:openai", VENDOR_MODELS["openai"], emulator=emulator)
        usage = provider_usage_usd(emulator, VENDOR_MODELS["openai"])
        sent = sent_per_unit(emulator)

    assert resumed.outcome.status is RunStatus.COMPLETE
    check = check_ledger(paths)
    assert check.counts[1][UnitStepState.VALID] == 6
    assert set(sent.values()) == {1} and attempts_per_unit(paths) == {1: 6}
    assert abs(check.cost_usd - usage) < 1e-12


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_line_absent_from_a_complete_download_is_still_dropped_and_retried(
    tmp_path: Path, vendor: str
) -> None:
    config = EmulatorConfig(
        answer_fn=walk_answer,
        batch_line_fault_schedule=("ok", "dropped"),
        batch_truncate_schedule=(True,),
    )
    paths, result, emulator = run(tmp_path, vendor, config, units=6, chunk=10)

    assert result.outcome.status is RunStatus.COMPLETE
    assert check_ledger(paths).counts[1][UnitStepState.VALID] == 6
    assert attempts_per_unit(paths) == {1: 5, 2: 1}  # the dropped one, asked again
    assert sorted(sent_per_unit(emulator).values()) == [1] * 5 + [2]
    assert "1 missing from the results (retried)" in paths.log.read_text()


# --- the decision after an incomplete download, as a table ------------------------------------


def _cut(certain: bool, signature: tuple[int, ...] = (100, 4)) -> IncompleteResults:
    return IncompleteResults(
        "the results of batch b are incomplete (...)",
        provider="openai",
        batch_id="b",
        certain=certain,
        signature=signature,
    )


@pytest.mark.parametrize(
    ("certain", "tries", "previous", "poll_s", "expected"),
    [
        # cut for sure: fetch again, waiting twice as long each time, from min(1 s, poll)
        (True, 1, None, 30.0, Refetch(delay_s=1.0)),
        (True, 2, (100, 4), 30.0, Refetch(delay_s=2.0)),
        (True, 5, (100, 4), 30.0, Refetch(delay_s=16.0)),
        (True, 3, None, 0.05, Refetch(delay_s=0.2)),
        (True, 2, (100, 4), 0.05, Refetch(delay_s=0.1)),  # the same cut again: still a cut
        # only looked short: the same download twice means it is complete as it is
        (False, 1, None, 30.0, Refetch(delay_s=1.0)),
        (False, 2, (100, 4), 30.0, Refetch()),
        (False, 2, (90, 3), 30.0, Refetch(delay_s=2.0)),
    ],
)
def test_after_an_incomplete_download(
    certain: bool, tries: int, previous: Any, poll_s: float, expected: Refetch
) -> None:
    assert after_incomplete(_cut(certain), tries, previous, poll_s) == expected


@pytest.mark.parametrize("certain", [True, False])
def test_after_too_many_incomplete_downloads_the_run_pauses(certain: bool) -> None:
    decision = after_incomplete(_cut(certain, (7, 1)), DOWNLOAD_TRIES, (8, 2), 1.0)
    assert decision.delay_s is None
    assert decision.pause == (
        f"openai: the results of batch b are incomplete (...), {DOWNLOAD_TRIES} downloads in a row; "
        "no request was taken as missing, resume to fetch them again"
    )
