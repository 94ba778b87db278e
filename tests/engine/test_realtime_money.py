"""Money and keys in realtime mode: cost is what the emulator reported, priced once per attempt;
``--max-cost`` and ``--timeout`` pause (never leave the run ``running``); API keys never reach
the run folder."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from octopipe.core.amounts import format_usd
from octopipe.core.costs import cost_usd as price
from octopipe.core.registry import load_registry
from octopipe.emulator import EmulatorConfig
from octopipe.emulator.answers import make_answer
from octopipe.engine.paths import RunPaths
from octopipe.engine.queries import run_status
from octopipe.engine.realtime import RealtimeOptions
from octopipe.store.ledger import Ledger
from octopipe.store.records import CostTotals, RunInfo
from support.realtime import (
    VENDOR_MODELS,
    VENDORS,
    EmulatorThread,
    check_ledger,
    copy_example,
    drive,
    fast_retries,
    make_run,
    octopipe_command,
    offline_env,
    set_keys,
    walk_answer,
)

CACHED = 16
SECRETS = {
    "OPENAI_API_KEY": "sk-test-SECRET-123456",
    "ANTHROPIC_API_KEY": "sk-ant-test-SECRET-654321",
    "GEMINI_API_KEY": "AIza-test-SECRET-777777",
    "GOOGLE_API_KEY": "AIza-test-SECRET-888888",
    "OPENAI_COMPATIBLE_API_KEY": "sk-compat-test-SECRET-999999",
}


def _walk(tmp: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    def edit_config(config: dict[str, Any]) -> None:
        fast_retries(config)
        if edit is not None:
            edit(config)

    return copy_example("random_walk", tmp, edit_config)


def _run_info(paths: RunPaths) -> tuple[RunInfo, CostTotals]:
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        return ledger.run_info(), ledger.cost_totals()
    finally:
        ledger.close()


@pytest.mark.parametrize("vendor", VENDORS)
def test_cost_is_the_sum_of_what_the_emulator_reported(vendor: str, tmp_path: Path) -> None:
    """Every answered request is priced once from the usage the emulator sent (cached prompt
    tokens included); refused requests (500) and in-call retries cost nothing extra; failed
    validations (malformed answers) are paid for like any other answer."""
    faults = ("malformed", "ok", "500", "malformed")
    paths = make_run(_walk(tmp_path), tmp_path / "runs", repeat=8)
    config = EmulatorConfig(
        answer_fn=walk_answer, fault_schedule=faults, cached_input_tokens=CACHED
    )
    model = VENDOR_MODELS[vendor]
    result = drive(paths, RealtimeOptions(provider=f"fake:{vendor}", model=model), config)

    assert result.outcome.status.value == "complete"
    checked = check_ledger(paths)
    registry = load_registry()
    expected, answered = 0.0, 0
    for index, request in enumerate(result.emulator.requests):  # type: ignore[union-attr]
        fault = faults[index] if index < len(faults) else None
        if fault == "500":
            continue
        answer = make_answer(
            request, walk_answer, malformed=fault == "malformed", cached_input_tokens=CACHED
        )
        assert answer.cached_input_tokens == CACHED
        cost = price(registry, "fake", model, answer)
        assert cost is not None and cost > 0
        expected += cost
        answered += 1
    assert answered == result.stats["responses"]["200"] == 8 + 2 == checked.attempts
    assert checked.cost_usd == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert run_status(paths).cost_usd == pytest.approx(expected, abs=1e-6)  # shown rounded
    # the executor's running total (what the cost cap compares) agrees with the ledger
    assert result.executor.budget.spent == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_max_cost_pauses_with_the_cap_in_the_reason(tmp_path: Path) -> None:
    paths = make_run(_walk(tmp_path), tmp_path / "runs", repeat=40)
    one_call = 30e-6  # gpt-4o-mini, ~150 prompt + ~14 answer tokens: about $0.00003
    cap = 5 * one_call
    config = EmulatorConfig(answer_fn=walk_answer, latency_ms=20)
    options = RealtimeOptions(provider="fake", max_cost_usd=cap, concurrency=2)
    result = drive(paths, options, config)

    assert result.outcome.status.value == "paused"
    assert result.outcome.reason is not None
    assert "cost cap" in result.outcome.reason and format_usd(cap) in result.outcome.reason
    info, totals = _run_info(paths)
    assert info.status.value == "paused" and info.status_reason == result.outcome.reason
    assert run_status(paths).status == "paused"
    check_ledger(paths, finished=False)
    assert 0 < totals.known_usd <= cap + 2 * one_call  # at most the calls already on the wire
    assert totals.attempts < 40

    resumed = drive(paths, RealtimeOptions(provider="fake"), EmulatorConfig(answer_fn=walk_answer))
    assert resumed.outcome.status.value == "complete"
    assert check_ledger(paths).attempts == 40


def test_a_resumed_run_counts_calls_in_flight_at_what_a_call_costs_not_at_all_spent(
    tmp_path: Path,
) -> None:
    """A run paused with some money spent, resumed with a cap that leaves room for every
    remaining call, finishes in one go: the calls in flight are counted at the average cost
    of a call, not each at the whole sum spent before the resume."""
    paths = make_run(_walk(tmp_path), tmp_path / "runs", repeat=40)
    one_call = 30e-6
    config = EmulatorConfig(answer_fn=walk_answer, latency_ms=50)
    first = drive(
        paths, RealtimeOptions(provider="fake", max_cost_usd=5 * one_call, concurrency=2), config
    )
    assert first.outcome.status.value == "paused"
    spent_before = _run_info(paths)[1].known_usd
    assert spent_before >= 4 * one_call

    cap = 60 * one_call  # the 40 calls of the run cost about 40 * one_call
    resumed = drive(
        paths, RealtimeOptions(provider="fake", max_cost_usd=cap, concurrency=32), config
    )
    assert resumed.outcome.status.value == "complete", resumed.outcome.reason
    assert check_ledger(paths).attempts == 40
    assert _run_info(paths)[1].known_usd <= cap


def test_timeout_pauses_promptly_without_sending_what_waits_for_the_pacer(tmp_path: Path) -> None:
    """At 120 rpm with 8 calls in flight, most of them wait for a pacer slot; when the time
    limit strikes, those are not sent: the run pauses about on time, their units pending."""
    import openai  # noqa: F401  (imported up front: the SDK import is not what is timed)

    paths = make_run(_walk(tmp_path), tmp_path / "runs", repeat=20)
    options = RealtimeOptions(provider="fake", timeout_s=1.0, rpm=120, concurrency=8)
    result = drive(paths, options, EmulatorConfig(answer_fn=walk_answer))

    assert result.outcome.status.value == "paused"
    assert result.outcome.reason == "time limit reached"
    assert result.seconds < 3.5  # 1 s limit + start-up; before the fix: ~5 s
    assert result.stats["requests_total"] <= 4  # ~2 per second, nothing after the limit
    info, totals = _run_info(paths)
    assert info.status.value == "paused" and info.status_reason == "time limit reached"
    check_ledger(paths, finished=False)
    assert totals.attempts == result.stats["requests_total"]

    resumed = drive(paths, RealtimeOptions(provider="fake"), EmulatorConfig(answer_fn=walk_answer))
    assert resumed.outcome.status.value == "complete"
    assert check_ledger(paths).attempts == 20


def test_api_keys_never_reach_the_run_folder(tmp_path: Path) -> None:
    """Two ``octopipe run`` processes with keys in their environment: a ``fake`` run stopped
    by ``--max-cost``, and a run against an OpenAI-compatible server that only accepts the
    key (so the key really is used), stopped by ``--timeout``. Not one byte of any key is in
    any file of either run, the ledger's bytes included, nor in what the commands printed."""
    runs = tmp_path / "runs"
    env = offline_env(**SECRETS)
    command = octopipe_command()

    capped = subprocess.run(
        [*command, "run", str(_walk(tmp_path / "a")), "--provider", "fake", "--yes",
         "--run", "capped", "--runs-dir", str(runs), "--max-cost", "0.0002", "--repeat", "40"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert capped.returncode == 1, capped.stderr
    info, _ = _run_info(RunPaths(runs / "capped"))
    assert info.status.value == "paused"
    assert info.status_reason is not None and "cost cap $0.0002" in info.status_reason

    emulator = EmulatorThread(
        EmulatorConfig(answer_fn=walk_answer, api_key=SECRETS["OPENAI_COMPATIBLE_API_KEY"])
    ).start()
    try:

        def compatible(config: dict[str, Any]) -> None:
            set_keys(config, "api.provider", "openai-compatible")
            set_keys(config, "api.base_url", emulator.base_url_for("openai-compatible"))
            set_keys(config, "api.model", "local-model")

        timed = subprocess.run(
            [*command, "run", str(_walk(tmp_path / "b", compatible)), "--yes", "--run", "timed",
             "--runs-dir", str(runs), "--timeout", "1s", "--repeat", "2000"],
            env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip
        stats = emulator.stats()
    finally:
        emulator.stop()
    assert timed.returncode == 1, timed.stderr
    info, totals = _run_info(RunPaths(runs / "timed"))
    assert (info.status.value, info.status_reason) == ("paused", "time limit reached")
    assert stats["responses"].get("401", 0) == 0  # the key was sent, and accepted
    assert totals.attempts == stats["responses"].get("200", 0) > 0

    files = [p for p in runs.rglob("*") if p.is_file()]
    assert any(p.name == "ledger.db" for p in files) and any(p.name == "trace.jsonl" for p in files)
    printed = (capped.stdout + capped.stderr + timed.stdout + timed.stderr).encode()
    for secret in SECRETS.values():
        needle = secret.encode()
        assert needle not in printed
        for path in files:
            assert needle not in path.read_bytes(), f"{secret} found in {path}"
    # nor any part of a key that a masked echo would keep (every key has SECRET in it)
    assert b"SECRET" not in printed
    assert not [p for p in files if b"SECRET" in p.read_bytes()]
