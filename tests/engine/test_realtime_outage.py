"""An outage, a server erroring on every call, a refusal every unit gets: the run pauses with
the reason instead of burning units' attempts, and resumes cleanly once the provider is back.
A short outage costs no unit anything. 401 exits 6. Provider errors are logged, summarised.

Over real loopback HTTP, through the real SDK; the emulator is started (and stopped) here on
127.0.0.1, as a user's own server would be.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from octopipe.core.states import UnitStepState
from octopipe.emulator import EmulatorConfig
from octopipe.engine.paths import RunPaths
from octopipe.engine.realtime import RealtimeOptions
from octopipe.errors import EXIT_PROVIDER
from support.realtime import (
    EmulatorThread,
    check_ledger,
    copy_example,
    drive,
    fast_retries,
    free_port,
    ledger_rows,
    make_lane,
    make_run,
    octopipe_command,
    offline_env,
    set_keys,
    step_states,
    trace_lines,
    walk_answer,
)

pytestmark = pytest.mark.timeout(120)

GRACE_S = 1.5


def _walk(tmp: Path, grace_s: float = GRACE_S) -> Path:
    def edit(config: dict[str, Any]) -> None:
        fast_retries(config)
        set_keys(config, "api.realtime.pause_after_outage_seconds", grace_s)

    return copy_example("random_walk", tmp / "src", edit)


def _fake() -> RealtimeOptions:
    return RealtimeOptions(provider="fake", model="gpt-4o-mini")


def _valid(paths: RunPaths) -> int:
    return list(step_states(paths, "report").values()).count(UnitStepState.VALID)


def _provider_lines(paths: RunPaths) -> list[str]:
    return [line for line in paths.log.read_text().splitlines() if "[PROVIDER]" in line]


def _assert_no_unit_charged(paths: RunPaths) -> None:
    assert ledger_rows(paths, "SELECT COUNT(*) FROM attempts WHERE outcome != 'valid'") == [(0,)]
    states = set(step_states(paths, "report").values())
    assert UnitStepState.EXHAUSTED not in states and UnitStepState.FAILED not in states


def _resume_completes(paths: RunPaths, units: int) -> None:
    resumed = drive(paths, _fake(), EmulatorConfig(answer_fn=walk_answer))
    assert resumed.outcome.status.value == "complete"
    check_ledger(paths)
    assert _valid(paths) == units
    # every unit answered on its first charged attempt: the outage cost nobody a try
    assert ledger_rows(paths, "SELECT DISTINCT attempt_no, outcome FROM attempts") == [(1, "valid")]


def test_a_server_failing_every_call_pauses_the_run_with_budgets_intact(tmp_path: Path) -> None:
    units = 40
    paths = make_run(_walk(tmp_path), tmp_path / "runs", repeat=units)
    failing = EmulatorConfig(answer_fn=walk_answer, faults={"500": 1.0})
    done = drive(paths, _fake(), failing)

    assert done.outcome.status.value == "paused"
    assert done.outcome.exit_code == EXIT_PROVIDER
    reason = done.outcome.reason or ""
    assert re.fullmatch(
        r"provider failing: openai: server_error: The server had an error processing your "
        r"request\. \(HTTP 500\) at http://127\.0\.0\.1:\d+/openai/v1/ "
        r"\(\d+ calls failed in a row over \d s\)",
        reason,
    ), reason
    assert GRACE_S <= done.seconds < GRACE_S + 15
    check_ledger(paths, finished=False)
    _assert_no_unit_charged(paths)
    assert ledger_rows(paths, "SELECT COUNT(*) FROM attempts") == [(0,)]
    # a storm of failed calls, a handful of log lines: one per kind, then counts
    failed_calls = [c for c in trace_lines(paths) if c["status"] != 200]
    assert len(failed_calls) >= 32 * 3  # the first wave of calls and their in-call retries
    lines = _provider_lines(paths)
    assert 1 <= len(lines) <= 4, lines
    assert "not charged (0/3 attempts used); sent again later" in lines[0]
    assert any(re.search(r"\d+ more call\(s\) since \(\d+ not charged\)", line) for line in lines)
    log = paths.log.read_text()
    assert f"[PAUSE] {reason}" in log
    assert "waiting for the provider go back to pending, no attempt used" in log

    _resume_completes(paths, units)


def test_a_refusal_every_unit_gets_is_a_run_level_pause(tmp_path: Path) -> None:
    units = 8
    paths = make_run(_walk(tmp_path), tmp_path / "runs", repeat=units)
    done = drive(paths, _fake(), EmulatorConfig(answer_fn=walk_answer, faults={"400": 1.0}))

    assert done.outcome.status.value == "paused"
    assert done.outcome.exit_code == EXIT_PROVIDER
    reason = done.outcome.reason or ""
    assert re.fullmatch(
        r"every call is refused: openai: invalid_request_error: Invalid request \(emulated\)\. "
        r"\(HTTP 400\) \(\d units in a row\)",
        reason,
    ), reason
    assert done.seconds < 15
    check_ledger(paths, finished=False)
    assert ledger_rows(paths, "SELECT COUNT(*) FROM attempts") == [(0,)]
    assert set(step_states(paths, "report").values()) == {UnitStepState.PENDING}

    _resume_completes(paths, units)


def test_a_refusal_for_one_unit_while_others_succeed_is_charged_and_logged(
    tmp_path: Path,
) -> None:
    paths = make_run(_walk(tmp_path), tmp_path / "runs", repeat=6)
    done = drive(paths, _fake(), EmulatorConfig(answer_fn=walk_answer, fault_schedule=("400",)))

    assert done.outcome.status.value == "complete"
    refused = [c["unit"] for c in trace_lines(paths) if c["status"] == 400]
    assert len(refused) == 1
    assert step_states(paths, "report")[refused[0]] is UnitStepState.EXHAUSTED
    lines = _provider_lines(paths)
    assert len(lines) == 1
    assert lines[0].endswith(
        f"report: openai: invalid_request_error: Invalid request (emulated). (HTTP 400): "
        f"unit {refused[0]}: attempt 1/3 charged, now exhausted (not retryable)"
    )


def test_a_short_outage_costs_no_unit_its_budget(tmp_path: Path) -> None:
    units = 30
    lane = make_lane(
        "openai-compatible",
        tmp_path,
        lambda c: set_keys(c, "api.realtime.pause_after_outage_seconds", 30),
    )
    paths = make_run(lane.pipeline, tmp_path / "runs", repeat=units)
    assert lane.port is not None
    config = EmulatorConfig(answer_fn=walk_answer, latency_ms=40, port=lane.port)
    emulators = [EmulatorThread(config).start()]
    outage: dict[str, float] = {}

    def restart_the_server() -> None:
        deadline = time.monotonic() + 60
        while _valid(paths) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        emulators[0].stop()
        outage["down"] = time.monotonic()
        time.sleep(1.5)
        emulators.append(EmulatorThread(config).start())
        outage["up"] = time.monotonic()

    restarter = threading.Thread(target=restart_the_server)
    restarter.start()
    try:
        done = drive(paths, lane.options(concurrency=4), emulator=emulators[0])
    finally:
        restarter.join()
        for emulator in emulators:
            emulator.stop()

    assert "up" in outage, "the server was never restarted"
    assert done.outcome.status.value == "complete"
    check_ledger(paths)
    assert _valid(paths) == units
    assert ledger_rows(paths, "SELECT DISTINCT attempt_no, outcome FROM attempts") == [(1, "valid")]
    failed = [c for c in trace_lines(paths) if c["status"] != 200]
    assert failed, "no call met the outage"
    lines = _provider_lines(paths)
    assert lines and all("charged," not in line for line in lines), lines
    assert "connection refused: unit " in lines[0]
    assert "[PAUSE]" not in paths.log.read_text()


# --- the real command line --------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 90) -> Any:
    return subprocess.run(
        [*octopipe_command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _status(run: str, runs: Path, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    result = _cli("status", run, "--runs-dir", str(runs), "--json", env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_server_stopped_mid_run_pauses_it_and_run_name_resumes(tmp_path: Path) -> None:
    units = 60
    pipeline = _walk(tmp_path, grace_s=2.0)
    runs = tmp_path / "runs"
    port = free_port()
    config = EmulatorConfig(answer_fn=walk_answer, latency_ms=60, port=port)
    env = offline_env(OCTOPIPE_EMULATOR_URL=f"http://127.0.0.1:{port}")
    emulator = EmulatorThread(config).start()
    args = ["--runs-dir", str(runs), "--yes", "--provider", "fake", "--concurrency", "4"]
    proc = subprocess.Popen(
        [*octopipe_command(), "run", str(pipeline), "--run", "out", "--repeat", str(units), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    paths = RunPaths(runs / "out")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if paths.ledger.exists() and _valid_or_zero(paths) >= 5:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        emulator.stop()
        stopped = time.monotonic()
        out, err = proc.communicate(timeout=60)
    finally:
        emulator.stop()
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - stopped

    assert proc.returncode == EXIT_PROVIDER, out + err
    assert took < 30, took
    where = f"at http://127.0.0.1:{port}/openai/v1/"
    expected = f"paused: provider unreachable: openai: connection refused {where}"
    assert expected in out, out
    assert "[PROVIDER] report: openai: connection refused: unit " in err  # on the terminal
    assert "[PROVIDER]" in paths.log.read_text()  # and in run.log
    view = _status("out", runs, env, tmp_path)
    assert view["status"] == "paused"
    assert view["reason"].startswith(f"provider unreachable: openai: connection refused {where}")
    report = next(s for s in view["steps"] if s["name"] == "report")
    assert report["retrying"] == report["failed"] == report["in_flight"] == 0
    assert 5 <= report["valid"] < units
    _assert_no_unit_charged(paths)

    with EmulatorThread(config):  # the server is back on the same address
        resumed = _cli("run", "out", *args, env=env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    check_ledger(paths)
    assert _valid(paths) == units
    assert ledger_rows(paths, "SELECT DISTINCT attempt_no, outcome FROM attempts") == [(1, "valid")]


def _valid_or_zero(paths: RunPaths) -> int:
    try:
        return _valid(paths)
    except Exception:  # the ledger is being created
        return 0


def test_an_auth_error_pauses_and_exits_6(tmp_path: Path) -> None:
    pipeline = _walk(tmp_path)
    runs = tmp_path / "runs"
    config = EmulatorConfig(answer_fn=walk_answer, api_key="the-key-the-server-wants")
    with EmulatorThread(config) as emulator:
        env = offline_env(OCTOPIPE_EMULATOR_URL=emulator.emulator.root_url)
        result = _cli(
            "run", str(pipeline), "--run", "auth", "--repeat", "3", "--runs-dir", str(runs),
            "--yes", "--provider", "fake", env=env, cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode == EXIT_PROVIDER, result.stdout + result.stderr
    assert "paused: openai: invalid_api_key: Incorrect API key provided." in result.stdout
    view = _status("auth", runs, env, tmp_path)
    assert view["status"] == "paused"
    assert view["reason"].startswith("openai: invalid_api_key: Incorrect API key provided.")


@pytest.mark.parametrize("grace", [0.0, float("nan")])
def test_the_outage_grace_must_be_a_positive_number(tmp_path: Path, grace: float) -> None:
    pipeline = _walk(tmp_path, grace_s=grace)
    result = _cli("validate", str(pipeline), env=offline_env(), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "api.realtime.pause_after_outage_seconds" in result.stdout + result.stderr


def test_replace_keeps_config_port() -> None:  # guard for the helpers above
    config = EmulatorConfig(port=1234)
    assert replace(config, latency_ms=5).port == 1234
