"""Batch mode under the providers' failure modes, through each vendor's SDK on the emulator:
every fault ends in recovered units or an explicit failure record, never a lost unit."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from octopipe.core.states import RunStatus, UnitStepState
from octopipe.emulator import EmulatorConfig
from support.batch import batch_rows, batch_units_of, drive_batch
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


def walk(tmp: Path, repeat: int, **keys: Any) -> Path:
    def edit(config: dict[str, Any]) -> None:
        fast_retries(config)
        set_keys(config, "processing.repeat", repeat)
        set_keys(config, "processing.chunk_size", 50)
        for key, value in keys.items():
            set_keys(config, key.replace("__", "."), value)

    return copy_example("random_walk", tmp, edit)


def attempts_by_unit(paths: Any) -> dict[str, list[tuple[str, str, str]]]:
    """unit id -> [(mode, outcome, errors json)] in attempt order, at the LLM step."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for unit_id, mode, outcome, errors in ledger_rows(
        paths,
        "SELECT u.unit_id, a.mode, a.outcome, a.errors_json FROM attempts a "
        "JOIN units u ON u.uid = a.uid WHERE a.step_idx = 1 ORDER BY a.uid, a.attempt_no",
    ):
        out.setdefault(unit_id, []).append((mode, outcome, errors))
    return out


def run_with(tmp: Path, vendor: str, config: EmulatorConfig, repeat: int = 6, **keys: Any) -> Any:
    paths = make_run(walk(tmp, repeat, **keys), tmp / "runs", mode="batch")
    result = drive_batch(paths, f"fake:{vendor}", VENDOR_MODELS[vendor], emulator_config=config)
    return paths, result


@pytest.mark.parametrize("vendor", VENDORS)
def test_expired_batch_keeps_its_finished_lines_and_resubmits_the_rest(
    tmp_path: Path, vendor: str
) -> None:
    config = EmulatorConfig(
        answer_fn=walk_answer, batch_delay_s=1.0, batch_expire_s=0.5, batch_expire_jobs=(True,)
    )
    paths, result = run_with(tmp_path, vendor, config, repeat=10)

    assert result.outcome.status is RunStatus.COMPLETE
    check = check_ledger(paths)
    assert check.counts[1][UnitStepState.VALID] == 10
    first, second = batch_rows(paths)
    salvaged = 0 if vendor == "gemini" else 5  # Gemini keeps no output of an expired job
    assert len(batch_units_of(paths, second["local_id"])) == 10 - salvaged
    assert first["state"] == second["state"] == "collected"
    # an expired line never ran: it used no attempt
    assert all(len(a) == 1 for a in attempts_by_unit(paths).values())
    assert "(expired)" in paths.log.read_text()


@pytest.mark.parametrize("vendor", VENDORS)
def test_cancelled_batch_keeps_its_finished_lines(tmp_path: Path, vendor: str) -> None:
    config = EmulatorConfig(answer_fn=walk_answer, batch_delay_s=4.0)
    paths, result = run_with(
        tmp_path,
        vendor,
        config,
        repeat=8,
        api__batch__deadline_hours=0.0003,  # cancelled after about a second
        api__batch__fallback_to_realtime=True,
    )
    assert result.outcome.status is RunStatus.COMPLETE
    check_ledger(paths)
    jobs = list(result.emulator.emulator.core.batches.jobs.values())
    assert len(jobs) == 1
    answered = sum(1 for o in jobs[0].outcomes or [] if o.reply is not None)
    if vendor != "gemini":
        assert answered > 0, "the batch was cancelled before any request finished"
    modes = Counter(a[0][0] for a in attempts_by_unit(paths).values())
    expected_batch = 0 if vendor == "gemini" else answered
    assert modes["batch"] == expected_batch
    assert modes["realtime"] == 8 - expected_batch
    assert "[CANCEL] batch" in paths.log.read_text()


@pytest.mark.parametrize("vendor", VENDORS)
def test_failed_lines_are_retried_or_failed_by_their_error_type(
    tmp_path: Path, vendor: str
) -> None:
    config = EmulatorConfig(answer_fn=walk_answer, batch_line_fault_schedule=("failed", "400"))
    paths, result = run_with(tmp_path, vendor, config)

    assert result.outcome.status is RunStatus.COMPLETE
    check = check_ledger(paths)
    history = attempts_by_unit(paths)
    first, second, *rest = sorted(history, key=lambda u: int(u.split("rep")[-1]))
    # a 500 inside the batch is transient: retried in a later batch, then valid
    assert [o for _, o, _ in history[first]] == ["error", "valid"]
    assert "TransientProviderError" in history[first][0][2]
    # a 400 is the request's own fault: it fails at once, with the provider's reason kept
    assert [o for _, o, _ in history[second]] == ["error"]
    assert "BadRequest" in history[second][0][2]
    assert all(len(history[u]) == 1 for u in rest)
    assert check.counts[1][UnitStepState.VALID] == 5
    assert check.counts[1][UnitStepState.EXHAUSTED] == 1


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_dropped_line_is_detected_and_retried(tmp_path: Path, vendor: str) -> None:
    config = EmulatorConfig(answer_fn=walk_answer, batch_line_fault_schedule=("ok", "dropped"))
    paths, result = run_with(tmp_path, vendor, config)

    assert result.outcome.status is RunStatus.COMPLETE
    check = check_ledger(paths)
    assert check.counts[1][UnitStepState.VALID] == 6
    history = attempts_by_unit(paths)
    dropped = [u for u, a in history.items() if len(a) == 2]
    assert len(dropped) == 1
    assert history[dropped[0]][0][1] == "error" and "dropped" in history[dropped[0]][0][2]
    assert "1 missing from the results (retried)" in paths.log.read_text()


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])  # Gemini inline results are JSON
def test_a_truncated_results_file_loses_no_unit(tmp_path: Path, vendor: str) -> None:
    config = EmulatorConfig(answer_fn=walk_answer, batch_truncate_schedule=(True,))
    paths, result = run_with(tmp_path, vendor, config)

    assert result.outcome.status is RunStatus.COMPLETE
    check = check_ledger(paths)
    assert check.counts[1][UnitStepState.VALID] == 6
    # the cut download is fetched again: the cut line is not asked a second time (more in
    # test_batch_downloads.py)
    assert all(len(a) == 1 for a in attempts_by_unit(paths).values())
    assert len(batch_rows(paths)) == 1


@pytest.mark.parametrize("vendor", VENDORS)
def test_rate_limited_submits_back_off_and_create_one_batch(tmp_path: Path, vendor: str) -> None:
    config = EmulatorConfig(
        answer_fn=walk_answer, batch_submit_faults=("429", "429"), retry_after_s=0.05
    )
    paths, result = run_with(tmp_path, vendor, config)

    assert result.outcome.status is RunStatus.COMPLETE
    check_ledger(paths)
    assert Counter(r["state"] for r in batch_rows(paths)) == {"abandoned": 2, "collected": 1}
    assert result.stats["batches_created"] == {vendor: 1}
    assert all(len(a) == 1 for a in attempts_by_unit(paths).values())


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_failed_batch_is_resubmitted_within_the_retry_budget(tmp_path: Path, vendor: str) -> None:
    config = EmulatorConfig(answer_fn=walk_answer, batch_fail_schedule=(True,))
    paths, result = run_with(tmp_path, vendor, config)

    assert result.outcome.status is RunStatus.COMPLETE
    check = check_ledger(paths)
    assert check.counts[1][UnitStepState.VALID] == 6
    history = attempts_by_unit(paths)
    assert all([o for _, o, _ in a] == ["error", "valid"] for a in history.values())
    assert result.stats["batches_created"] == {vendor: 2}


def test_a_batch_that_keeps_failing_exhausts_its_units_explicitly(tmp_path: Path) -> None:
    config = EmulatorConfig(answer_fn=walk_answer, batch_fail_schedule=(True,) * 10)
    paths, result = run_with(tmp_path, "openai", config, repeat=3)

    assert result.outcome.status is RunStatus.COMPLETE
    check = check_ledger(paths)
    assert check.counts[1][UnitStepState.EXHAUSTED] == 3  # three attempts each, then failed
    assert all(len(a) == 3 for a in attempts_by_unit(paths).values())
    failures = (paths.outputs / "report_failures.jsonl").read_text().splitlines()
    assert len(failures) == 3


def test_a_crash_between_recording_an_expired_batch_and_closing_it_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner dies after an expired batch's finished lines were recorded, before the batch
    was closed: its unfinished units must still be held by it (not pending, where a new batch
    would claim them), and the next start closes it and resubmits exactly those units."""
    from octopipe.emulator import EmulatorThread
    from octopipe.engine import batch_collect

    paths = make_run(walk(tmp_path, 10), tmp_path / "runs", mode="batch")
    config = EmulatorConfig(
        answer_fn=walk_answer, batch_delay_s=1.0, batch_expire_s=0.5, batch_expire_jobs=(True,)
    )

    def crash(self: Any, batch: Any, tally: Any) -> Any:
        raise RuntimeError("simulated crash before the batch is closed")

    with EmulatorThread(config) as emulator:
        with monkeypatch.context() as patch:
            patch.setattr(batch_collect.BatchRecorder, "finish", crash)
            with pytest.raises(RuntimeError, match="simulated crash"):
                drive_batch(paths, "fake:openai", emulator=emulator)
        held = check_ledger(paths, finished=False, after_kill=True)
        assert held.counts[1][UnitStepState.VALID] == 5  # the finished half, recorded
        assert held.counts[1][UnitStepState.IN_FLIGHT] == 5  # the rest, still the batch's
        assert held.counts[1].get(UnitStepState.PENDING, 0) == 0
        result = drive_batch(paths, "fake:openai", emulator=emulator)
    assert result.outcome.status is RunStatus.COMPLETE
    check = check_ledger(paths)
    assert check.counts[1][UnitStepState.VALID] == 10
    assert all(len(a) == 1 for a in attempts_by_unit(paths).values())
    resubmitted = batch_rows(paths)[1]
    assert len(batch_units_of(paths, resubmitted["local_id"])) == 5


def test_results_deleted_at_the_provider_are_resent_without_charging_the_units(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenAI and Anthropic keep results for a limited time: a download that answers 404
    resends the units instead of losing them (or charging them a failed attempt)."""
    from octopipe.emulator.batches import not_found
    from octopipe.emulator.vendors import openai_batch

    routes = openai_batch.OpenAIBatchRoutes
    original_content, original_info = routes.content, routes.file_info
    deleted: list[str] = []

    def gone(self: Any, http: Any) -> bool:  # a results file (not an upload), until refused once
        return http.match_info["file_id"] not in self.store.files and not deleted

    async def first_download_finds_it_deleted(self: Any, http: Any) -> Any:
        if gone(self, http):
            deleted.append(http.match_info["file_id"])
            return not_found(self.vendor, "file")
        return await original_content(self, http)

    async def deleted_until_then(self: Any, http: Any) -> Any:
        return (
            not_found(self.vendor, "file") if gone(self, http) else await original_info(self, http)
        )

    monkeypatch.setattr(routes, "content", first_download_finds_it_deleted)
    monkeypatch.setattr(routes, "file_info", deleted_until_then)
    paths, result = run_with(tmp_path, "openai", EmulatorConfig(answer_fn=walk_answer))

    assert deleted, "no results download was intercepted"
    assert result.outcome.status is RunStatus.COMPLETE
    check = check_ledger(paths)
    assert check.counts[1][UnitStepState.VALID] == 6
    assert all(len(a) == 1 for a in attempts_by_unit(paths).values())
    assert len(batch_rows(paths)) == 2
    assert "results no longer available; resending" in paths.log.read_text()
