"""`octopipe run` settings as a user types them: numbers that cannot mean anything are refused
before any run exists; a cost cap that cannot be counted is refused in both modes; an
OpenAI-compatible step without a server address is found before the run is created; the
model and the server address can change on resume and are recorded; Ctrl+C with calls in
flight pauses within seconds and says what it waits for.

Subprocesses of the real CLI, the emulator on 127.0.0.1, no key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from octopipe.emulator import EmulatorConfig, EmulatorThread
from octopipe.engine.paths import RunPaths
from support.cli import octopipe, runs_in, walk_copy
from support.realtime import (
    free_port,
    ledger_rows,
    octopipe_command,
    offline_env,
    walk_answer,
)

pytestmark = pytest.mark.timeout(120)


def info_json(run: str, runs: Path, cwd: Path) -> dict[str, Any]:
    result = octopipe("info", run, "--runs-dir", str(runs), "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- class 11: numbers and cost caps -----------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (["--max-cost", "nan"], "'--max-cost': 'nan' is not a finite number"),
        (["--max-cost", "inf"], "'--max-cost': 'inf' is not a finite number"),
        (["--max-cost", "-1"], "'--max-cost': -1.0 is not in the range x>0"),
        (["--timeout", "0"], "--timeout '0': give a duration longer than 0 s"),
        (["--timeout", "0m0s"], "--timeout '0m0s': give a duration longer than 0 s"),
        (["--rpm", "0"], "'--rpm': 0 is not in the range 1<=x<=100000000"),
        (["--tpm", "nan"], "'--tpm': 'nan' is not a valid integer"),
        (["--concurrency", "99999999999999999999"], "'--concurrency': 99999999999999999999"),
        (["--max-attempts", "0"], "'--max-attempts': 0 is not in the range 1<=x<=1000"),
        (
            ["--poll-interval", "inf"],
            "'--poll-interval': must be a number of seconds between 0 (excluded) and 86400",
        ),
        (["--base-url", "ftp://host/v1"], "--base-url 'ftp://host/v1' is not an http(s) address"),
        (["--base-url", "http://me:pw@host/v1"], "--base-url must not carry credentials"),
    ],
)
def test_bad_numbers_are_refused_before_any_run_exists(
    tmp_path: Path, flags: list[str], complaint: str
) -> None:
    pipeline = walk_copy(tmp_path)
    runs = tmp_path / "runs"
    result = octopipe(
        "run", str(pipeline), "--provider", "fake", "--yes", "--runs-dir", str(runs), *flags,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert complaint in result.stderr, result.stderr
    assert runs_in(runs) == []  # no run, not even a half-created one


@pytest.mark.parametrize("mode", ["--realtime", "--batch"])
def test_a_cost_cap_on_an_unpriced_model_is_refused_before_the_run_is_created(
    tmp_path: Path, mode: str
) -> None:
    pipeline = walk_copy(tmp_path)
    runs = tmp_path / "runs"
    result = octopipe(
        "run", str(pipeline), mode, "--provider", "fake", "--model", "house-model-7b",
        "--max-cost", "2", "--yes", "--runs-dir", str(runs), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    kind = mode.strip("-")
    assert (
        f"error: --max-cost $2.00 cannot be held: step 'report' uses fake/house-model-7b, "
        f"which has no known {kind} price (`octopipe models` lists the priced ones); supply "
        "its price in ~/.config/octopipe/prices.yaml or in a price file the pipeline names "
        "under `prices:`"
    ) in result.stderr.replace("\n", " ")
    assert runs_in(runs) == []


@pytest.mark.parametrize("mode", ["--realtime", "--batch"])
def test_a_cost_cap_holds_once_a_price_file_prices_the_model(tmp_path: Path, mode: str) -> None:
    pipeline = walk_copy(tmp_path)
    (pipeline / "prices.yaml").write_text(
        "openai:\n  house-model-7b:\n    standard: {input: 0.5, output: 1.5}\n"
        "    batch: {input: 0.25, output: 0.75}\n",
        encoding="utf-8",
    )
    config = pipeline / "config.yaml"
    config.write_text("prices: prices.yaml\n" + config.read_text(encoding="utf-8"))
    runs = tmp_path / "runs"
    result = octopipe(
        "run", str(pipeline), mode, "--provider", "fake", "--model", "house-model-7b",
        "--max-cost", "2", "--yes", "--runs-dir", str(runs), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    [run] = runs_in(runs)
    status = octopipe("status", run, "--json", "--runs-dir", str(runs), cwd=tmp_path)
    data = json.loads(status.stdout)
    assert data["unknown_cost_attempts"] == 0
    assert data["cost_usd"] is not None and data["cost_usd"] > 0


def test_a_cost_cap_on_an_unpriced_model_is_refused_on_resume_too(tmp_path: Path) -> None:
    pipeline = walk_copy(tmp_path)
    runs = tmp_path / "runs"
    created = octopipe(
        "init", str(pipeline), "--provider", "fake", "--model", "house-model-7b",
        "--mode", "realtime", "--run", "u", "--runs-dir", str(runs), cwd=tmp_path,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    result = octopipe("run", "u", "--max-cost", "2", "--yes", "--runs-dir", str(runs), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "step 'report' uses fake/house-model-7b, which has no known realtime price" in (
        result.stderr
    )
    details = info_json("u", runs, tmp_path)
    assert details["status"] == "pending"  # left as it was: not started, no cap kept
    assert "max_cost_usd" not in details["options"]
    assert ledger_rows(RunPaths(runs / "u"), "SELECT COUNT(*) FROM attempts") == [(0,)]


# --- class 17: provider settings on resume ------------------------------------------------------


def test_an_openai_compatible_step_without_a_server_is_refused_before_the_run_is_created(
    tmp_path: Path,
) -> None:
    pipeline = walk_copy(tmp_path, api__provider="openai-compatible", api__model="local-model")
    runs = tmp_path / "runs"
    result = octopipe("run", str(pipeline), "--yes", "--runs-dir", str(runs), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        "error: step 'report' uses provider 'openai-compatible', which needs the server's "
        "address: set api.base_url in the config, pass --base-url URL or set OPENAI_BASE_URL"
    ) in result.stderr
    assert runs_in(runs) == []


def test_the_model_given_on_resume_is_used_recorded_and_shown(tmp_path: Path) -> None:
    pipeline = walk_copy(tmp_path)
    runs = tmp_path / "runs"
    created = octopipe(
        "init", str(pipeline), "--provider", "fake", "--model", "gpt-4o-mini", "--mode",
        "realtime", "--run", "m", "--runs-dir", str(runs), cwd=tmp_path,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    ran = octopipe(
        "run", "m", "--model", "gpt-4.1-mini", "--yes", "--runs-dir", str(runs), cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr

    details = info_json("m", runs, tmp_path)
    assert details["model"] == "gpt-4.1-mini"
    assert details["options"]["model"] == "gpt-4.1-mini"
    status = octopipe("status", "m", "--runs-dir", str(runs), "--json", cwd=tmp_path)
    assert json.loads(status.stdout)["model"] == "gpt-4.1-mini"
    assert ledger_rows(RunPaths(runs / "m"), "SELECT DISTINCT model FROM attempts") == [
        ("gpt-4.1-mini",)
    ]
    assert "[COMMAND] options: model=gpt-4.1-mini" in (runs / "m" / "run.log").read_text()


def test_base_url_on_resume_points_the_run_at_a_moved_server(tmp_path: Path) -> None:
    secret = "sk-compat-SECRET-4242424242"
    old = f"http://127.0.0.1:{free_port()}/openai/v1"  # nobody listens there
    pipeline = walk_copy(
        tmp_path,
        api__provider="openai-compatible",
        api__model="local-model",
        api__base_url=old,
        api__realtime__pause_after_outage_seconds=0.5,
    )
    runs = tmp_path / "runs"
    env = offline_env(OPENAI_COMPATIBLE_API_KEY=secret)
    first = octopipe(
        "run", str(pipeline), "--run", "moved", "--yes", "--runs-dir", str(runs),
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert first.returncode == 6, first.stdout + first.stderr
    assert f"paused: provider unreachable: openai-compatible: connection refused at {old}/" in (
        first.stdout
    )

    with EmulatorThread(EmulatorConfig(answer_fn=walk_answer)) as emulator:
        new = emulator.base_url_for("openai-compatible")
        resumed = octopipe(
            "run", "moved", "--base-url", new, "--yes", "--runs-dir", str(runs),
            cwd=tmp_path, env=env,
        )  # fmt: skip
        again = octopipe("run", "moved", "--yes", "--runs-dir", str(runs), cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert again.returncode == 0, again.stdout + again.stderr
    details = info_json("moved", runs, tmp_path)
    assert details["status"] == "complete"
    assert details["options"]["base_url"] == new
    assert f"[COMMAND] options: base_url={new}" in (runs / "moved" / "run.log").read_text()
    for path in (runs / "moved").rglob("*"):  # the address is kept, never the key
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_base_url_is_refused_for_a_run_without_an_openai_compatible_step(tmp_path: Path) -> None:
    pipeline = walk_copy(tmp_path)
    runs = tmp_path / "runs"
    result = octopipe(
        "run", str(pipeline), "--provider", "fake", "--base-url", "http://127.0.0.1:9/v1",
        "--yes", "--runs-dir", str(runs), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no step of this run uses that provider (they use: fake)" in result.stderr
    assert runs_in(runs) == []


# --- class 17: Ctrl+C with calls in flight --------------------------------------------------------


def test_ctrl_c_with_calls_in_flight_pauses_within_seconds_and_says_so(tmp_path: Path) -> None:
    units = 6
    pipeline = walk_copy(tmp_path)
    runs = tmp_path / "runs"
    config = EmulatorConfig(answer_fn=walk_answer, faults={"hang": 1.0}, hang_max_s=300)
    with EmulatorThread(config) as emulator:
        env = offline_env(OCTOPIPE_EMULATOR_URL=emulator.emulator.root_url)
        proc = subprocess.Popen(
            [
                *octopipe_command(), "run", str(pipeline), "--run", "c", "--repeat", str(units),
                "--provider", "fake", "--yes", "--runs-dir", str(runs),
            ],
            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while emulator.stats()["requests_total"] < units and time.monotonic() < deadline:
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.05)
            time.sleep(0.2)
            sent = time.monotonic()
            os.kill(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=20)
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()

    assert proc.returncode == 130, out + err
    assert took < 6, took  # the request timeout is 120 s: it was not waited for
    assert f"[STOP] waiting up to 2 s for {units} call(s) in flight" in err
    assert f"[STOP] abandoned {units} call(s) still in flight; their units are pending" in err
    details = info_json("c", runs, tmp_path)
    assert details["status"] == "paused"
    assert details["reason"] == "interrupted (SIGINT)"
    report = next(s for s in details["steps"] if s["name"] == "report")
    assert (report["pending"], report["in_flight"], report["valid"]) == (units, 0, 0)
    assert ledger_rows(RunPaths(runs / "c"), "SELECT COUNT(*) FROM attempts") == [(0,)]
