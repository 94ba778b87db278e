"""`octopipe run --batch`, `--detach`, `watch` and `status` as a user types them (subprocesses,
the emulator on 127.0.0.1, no key)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from octopipe.emulator import EmulatorConfig, EmulatorThread
from octopipe.store.lock import is_held
from support.cli import octopipe
from support.realtime import EXAMPLES, offline_env


def batch_on_fake(
    pipeline: Path, run: str, *extra: str, cwd: Path, poll: str = "0.1", **kw: Any
) -> subprocess.CompletedProcess[str]:
    """``octopipe run PIPELINE --batch --provider fake --yes --run RUN --runs-dir runs
    --poll-interval POLL EXTRA`` (the one command these tests vary)."""
    argv = ["run", str(pipeline), "--batch", "--provider", "fake", "--yes", "--run", run]
    argv += ["--runs-dir", "runs", "--poll-interval", poll, *extra]
    return octopipe(*argv, cwd=cwd, timeout=180, **kw)


def small_example(tmp: Path, name: str = "card_game", **keys: object) -> Path:
    target = tmp / name
    shutil.copytree(EXAMPLES / name, target)
    config = yaml.safe_load((target / "config.yaml").read_text())
    config["processing"]["repeat"] = 1
    config["processing"]["chunk_size"] = 20
    for key, value in keys.items():
        node = config
        *parents, last = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    (target / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def test_run_batch_on_the_emulator_completes_and_status_shows_the_batches(tmp_path: Path) -> None:
    pipeline = small_example(tmp_path)
    done = batch_on_fake(pipeline, "b1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "estimated cost (batch" in done.stdout
    assert "[SUBMIT] batch" in done.stderr and "[COLLECT] batch" in done.stderr

    status = octopipe("status", "b1", "--runs-dir", "runs", "--json", cwd=tmp_path)
    view = json.loads(status.stdout)
    assert view["mode"] == "batch"
    assert view["status"] in ("complete", "complete_with_failures")
    assert set(view["batch_counts"]) == {"collected"} and view["open_batches"] == []
    text = octopipe("status", "b1", "--runs-dir", "runs", cwd=tmp_path).stdout
    assert "batches:" in text and "collected" in text


def test_detach_returns_at_once_and_watch_follows_to_the_end(tmp_path: Path) -> None:
    pipeline = small_example(tmp_path)
    # The batch stays open long enough for `watch` to start while it waits, even when two
    # CLI start-ups (the refused second run, then watch) take seconds on a loaded machine.
    with EmulatorThread(EmulatorConfig(batch_delay_s=4.0)) as emulator:
        env = offline_env(OCTOPIPE_EMULATOR_URL=emulator.emulator.root_url)
        t0 = time.monotonic()
        started = batch_on_fake(pipeline, "d1", "--detach", cwd=tmp_path, poll="0.2", env=env)
        assert started.returncode == 0, started.stderr + started.stdout
        assert "continues in the background" in started.stdout
        assert time.monotonic() - t0 < 60
        run_dir = tmp_path / "runs" / "d1"
        deadline = time.monotonic() + 30
        while not is_held(run_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        again = octopipe(
            "run", "d1", "--detach", "--runs-dir", "runs", "--yes", cwd=tmp_path, env=env
        )
        assert again.returncode == 5 and "already being driven" in again.stderr
        watched = octopipe(
            "watch", "d1", "--runs-dir", "runs", "--every", "1", cwd=tmp_path, env=env
        )
        assert watched.returncode == 0, watched.stderr + watched.stdout
        assert "[COLLECT] batch" in watched.stdout
        summaries = [x for x in watched.stdout.splitlines() if x.startswith("[WATCH]")]
        assert summaries and "play 0 valid" in summaries[0]  # per step, while batches wait
        assert "batches" in summaries[0]
        view = json.loads(
            octopipe("status", "d1", "--runs-dir", "runs", "--json", cwd=tmp_path, env=env).stdout
        )
        assert view["status"] in ("complete", "complete_with_failures")
        assert emulator.stats()["batches_created"]["openai"] >= 1
    assert not is_held(run_dir)


def test_a_flag_on_an_existing_run_switches_its_mode(tmp_path: Path) -> None:
    pipeline = small_example(tmp_path)
    created = octopipe(
        "init",
        str(pipeline),
        "--run",
        "m1",
        "--runs-dir",
        "runs",
        "--provider",
        "fake",
        cwd=tmp_path,
    )
    assert created.returncode == 0, created.stderr
    done = octopipe(
        "run",
        "m1",
        "--realtime",
        "--yes",
        "--runs-dir",
        "runs",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    view = json.loads(octopipe("status", "m1", "--runs-dir", "runs", "--json", cwd=tmp_path).stdout)
    assert view["mode"] == "realtime" and view["batch_counts"] == {}
    assert "mode: batch -> realtime" in (tmp_path / "runs" / "m1" / "run.log").read_text()


def test_watch_on_a_paused_run_only_shows_it(tmp_path: Path) -> None:
    pipeline = small_example(tmp_path)
    octopipe("init", str(pipeline), "--run", "w1", "--runs-dir", "runs", cwd=tmp_path)
    shown = octopipe("watch", "w1", "--runs-dir", "runs", cwd=tmp_path)
    assert shown.returncode == 1
    assert "resume it with `octopipe run w1`" in shown.stderr


def test_watch_resumes_a_run_whose_runner_died(tmp_path: Path) -> None:
    import os
    import signal

    from octopipe.store.lock import holder_pid

    pipeline = small_example(tmp_path)
    with EmulatorThread(EmulatorConfig(batch_delay_s=1.0)) as emulator:
        env = offline_env(OCTOPIPE_EMULATOR_URL=emulator.emulator.root_url)
        started = batch_on_fake(pipeline, "k1", "--detach", cwd=tmp_path, poll="0.2", env=env)
        assert started.returncode == 0, started.stderr
        run_dir = tmp_path / "runs" / "k1"
        deadline = time.monotonic() + 30
        while not is_held(run_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        log = run_dir / "run.log"
        while "[SUBMIT]" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "the runner never submitted a batch"
            time.sleep(0.05)
        pid = holder_pid(run_dir)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        while is_held(run_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        shown = json.loads(
            octopipe("status", "k1", "--runs-dir", "runs", "--json", cwd=tmp_path, env=env).stdout
        )
        assert shown["status"] == "detached"
        watched = octopipe("watch", "k1", "--runs-dir", "runs", cwd=tmp_path, env=env)
        assert watched.returncode == 0, watched.stderr + watched.stdout
        assert "its runner died; resuming it here" in watched.stderr
        created = emulator.stats()["batches_created"]["openai"]
    final = json.loads(
        octopipe("status", "k1", "--runs-dir", "runs", "--json", cwd=tmp_path).stdout
    )
    assert final["status"] in ("complete", "complete_with_failures")
    assert final["open_batches"] == []
    assert created == final["batch_counts"]["collected"]  # nothing submitted twice


def test_a_cost_cap_holds_on_resume_until_changed(tmp_path: Path) -> None:
    pipeline = small_example(tmp_path)
    common = ("--provider", "fake", "--yes", "--runs-dir", "runs", "--poll-interval", "0.1")
    first = octopipe(
        "run",
        str(pipeline),
        "--batch",
        "--run",
        "c1",
        "--max-cost",
        "0.00001",
        *common,
        cwd=tmp_path,
    )
    assert first.returncode == 1, first.stderr + first.stdout
    assert "paused: cost cap $0.00001" in first.stdout
    again = octopipe("run", "c1", *common, cwd=tmp_path)
    assert again.returncode == 1, again.stderr + again.stdout
    assert "cost cap $0.00001 (set earlier" in again.stdout
    assert "paused: cost cap" in again.stdout
    raised = octopipe("run", "c1", "--max-cost", "5", *common, cwd=tmp_path)
    assert raised.returncode == 0, raised.stderr + raised.stdout
    view = json.loads(octopipe("status", "c1", "--runs-dir", "runs", "--json", cwd=tmp_path).stdout)
    assert view["status"] in ("complete", "complete_with_failures")
    assert 0 < view["cost_usd"] <= 5


def test_batch_with_a_provider_without_a_batch_api_creates_no_run(tmp_path: Path) -> None:
    pipeline = small_example(tmp_path)
    refused = octopipe(
        "run",
        str(pipeline),
        "--batch",
        "--provider",
        "openai-compatible",
        "--model",
        "m",
        "--yes",
        "--runs-dir",
        "runs",
        cwd=tmp_path,
    )
    assert refused.returncode == 2
    assert "provider 'openai-compatible' has no batch API" in refused.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
