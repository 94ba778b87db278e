"""``octopipe run`` learns the account's limits from the answers' headers: against an emulator
whose account takes 600 requests/min (a limit the run is not told), an OpenAI gpt-4o-mini run
paces above the registry's tier-1 default (500 rpm) and holds the account's limit, with
next to no 429s."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from octopipe.core.registry import load_registry
from octopipe.emulator import EmulatorConfig
from octopipe.engine.paths import RunPaths
from support.realtime import (
    EmulatorThread,
    copy_example,
    fast_retries,
    octopipe_command,
    offline_env,
    set_keys,
    walk_answer,
)

ACCOUNT_RPM = 600
UNITS = 100  # 10 s at 600 rpm
EDGE_S = 1.5  # left out at each end of the run: the first answers teach the limit


def _unix(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _trace(paths: RunPaths) -> list[dict[str, Any]]:
    return [json.loads(line) for line in paths.trace.read_text().splitlines()]


def test_a_run_told_nothing_paces_to_the_account_limit(tmp_path: Path) -> None:
    default_rpm = load_registry().limits("openai", "gpt-4o-mini").rpm
    assert default_rpm is not None and default_rpm < ACCOUNT_RPM

    def openai_mini(config: dict[str, Any]) -> None:
        fast_retries(config)
        set_keys(config, "api.provider", "openai")
        set_keys(config, "api.model", "gpt-4o-mini")
        config["post_process"] = []

    pipeline = copy_example("random_walk", tmp_path, openai_mini)
    emulator = EmulatorThread(
        EmulatorConfig(account_rpm=ACCOUNT_RPM, latency_ms=50, answer_fn=walk_answer)
    ).start()
    try:
        env = offline_env(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=emulator.base_url_for("openai"))
        done = subprocess.run(
            [*octopipe_command(), "run", str(pipeline), "--yes", "--run", "learn",
             "--runs-dir", str(tmp_path / "runs"), "--repeat", str(UNITS)],
            env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip
        stats = emulator.stats()
    finally:
        emulator.stop()
    assert done.returncode == 0, done.stderr

    events = _trace(RunPaths(tmp_path / "runs" / "learn"))
    paces = [e for e in events if e["kind"] == "pace"]
    assert paces and paces[0]["stated_rpm"] == ACCOUNT_RPM
    assert paces[-1]["pace_rpm"] > default_rpm

    calls = sorted(_unix(e["ts"]) for e in events if e["kind"] == "call")
    start, end = calls[0] + EDGE_S, calls[-1] - EDGE_S
    achieved = sum(1 for t in calls if start < t <= end) / (end - start) * 60
    assert achieved >= 0.9 * ACCOUNT_RPM, (achieved, paces)
    assert stats["status_429"] <= 0.02 * stats["requests_total"], stats
    assert stats["requests_total"] == len(calls)
