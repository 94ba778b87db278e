"""The emulator itself: control endpoints, limiter, fault plan, runners and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from typing import Any

import aiohttp
import openai
import pytest

from octopipe.emulator import EmulatorConfig, EmulatorThread, run_emulator
from octopipe.emulator.config import parse_fault
from octopipe.emulator.faults import FaultPlan, RateLimiter

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def post(url: str, body: Any) -> tuple[int, dict[str, Any], Mapping[str, str]]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as reply:
        return reply.status, await reply.json(), reply.headers


async def test_stats_endpoint_counts_requests_faults_and_statuses() -> None:
    async with run_emulator(EmulatorConfig(fault_schedule=("500", "ok"))) as emu:
        url = emu.base_url_for("openai") + "/chat/completions"
        assert (await post(url, CHAT))[0] == 500
        assert (await post(url, CHAT))[0] == 200
        stats_url = emu.root_url + "/_emulator/stats"
        async with aiohttp.ClientSession() as session, session.get(stats_url) as reply:
            stats = await reply.json()
    assert stats["requests"] == {"openai.chat.completions": 2}
    assert stats["responses"] == {"200": 1, "500": 1}
    assert stats["faults"] == {"500": 1}
    assert stats == emu.stats()


async def test_faults_can_be_scheduled_over_http() -> None:
    async with run_emulator() as emu:
        status, body, _ = await post(emu.root_url + "/_emulator/faults", {"schedule": ["503"]})
        assert (status, body) == (200, {"scheduled": ["503"]})
        assert (
            await post(emu.base_url_for("anthropic") + "/v1/messages", {**CHAT, "max_tokens": 5})
        )[0] == 503
        status, _, _ = await post(emu.root_url + "/_emulator/faults", {"schedule": ["teapot"]})
        assert status == 400


async def test_unprefixed_paths_serve_the_sdk_defaults() -> None:
    async with run_emulator() as emu:
        status, body, headers = await post(emu.root_url + "/v1/chat/completions", CHAT)
    assert status == 200
    assert body["object"] == "chat.completion"
    assert headers["x-request-id"].startswith("req_emu_")


async def test_bad_bodies_get_the_vendors_400() -> None:
    async with run_emulator() as emu:
        status, body, _ = await post(emu.base_url_for("anthropic") + "/v1/messages", CHAT)
        assert status == 400 and body["error"]["type"] == "invalid_request_error"
        status, _, _ = await post(emu.base_url_for("gemini") + "/v1beta/models/m:embedContent", {})
        assert status == 404


async def test_a_failing_answer_function_is_a_500() -> None:
    def broken(request: Any) -> str:
        raise RuntimeError("bug in the test's answer function")

    async with run_emulator(EmulatorConfig(answer_fn=broken)) as emu:
        status, _, _ = await post(emu.base_url_for("openai") + "/chat/completions", CHAT)
    assert status == 500


def test_rate_limiter_slides_its_window() -> None:
    now = [100.0]
    limiter = RateLimiter(EmulatorConfig(rpm=2, rpm_window_s=60.0), clock=lambda: now[0])
    assert limiter.admit("openai", "m") is None
    now[0] = 110.0
    assert limiter.admit("openai", "m") is None
    assert limiter.admit("openai", "m") == pytest.approx(50.0)
    assert limiter.admit("openai", "other-model") is None
    assert limiter.admit("gemini", "m") is None
    now[0] = 160.0
    assert limiter.admit("openai", "m") is None
    assert limiter.admit("openai", "m") == pytest.approx(10.0)


def test_rpm_by_model_overrides_the_default() -> None:
    limiter = RateLimiter(EmulatorConfig(rpm=1, rpm_by_model={"big": 3}))
    assert [limiter.admit("openai", "big") for _ in range(4)][-1] is not None
    assert limiter.admit("openai", "small") is None
    assert limiter.admit("openai", "small") is not None


def test_fault_probabilities_are_seeded() -> None:
    config = EmulatorConfig(faults={"500": 0.3, "hang": 0.1}, seed=7)
    plan_a, plan_b = FaultPlan(config), FaultPlan(config)
    sequence = [plan_a.next() for _ in range(500)]
    assert sequence == [plan_b.next() for _ in range(500)]
    assert 100 < sequence.count("500") < 200
    assert 20 < sequence.count("hang") < 80


def test_schedule_comes_before_probabilities() -> None:
    plan = FaultPlan(EmulatorConfig(fault_schedule=("429", "ok"), faults={"400": 1.0}))
    plan.inject(["quota"])
    assert [plan.next() for _ in range(4)] == ["429", None, "quota", "400"]


@pytest.mark.parametrize(
    "config",
    [
        {"faults": {"418": 0.1}},
        {"faults": {"500": 1.5}},
        {"faults": {"500": 0.6, "503": 0.6}},
        {"fault_schedule": ("nope",)},
        {"rpm": 0},
    ],
)
def test_bad_configs_are_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        EmulatorConfig(**config)


def test_parse_fault() -> None:
    assert parse_fault("500=0.25") == ("500", 0.25)
    assert parse_fault("hang") == ("hang", 1.0)
    with pytest.raises(ValueError):
        parse_fault("500=lots")


def test_thread_runner_serves_synchronous_code() -> None:
    with EmulatorThread(EmulatorConfig(latency_ms=5)) as emu:
        client = openai.OpenAI(base_url=emu.base_url_for("openai"), api_key="k", max_retries=0)
        completion = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
        client.close()
        with urllib.request.urlopen(emu.emulator.root_url + "/_emulator/stats") as reply:
            stats = json.load(reply)
    assert completion.choices[0].message.content
    assert stats["requests_total"] == 1 == emu.stats()["requests_total"]
    assert emu.requests[-1].prompt == "hi"


def test_cli_runs_as_a_subprocess() -> None:
    command = [
        sys.executable,
        "-m",
        "octopipe.emulator",
        "--port",
        "0",
        "--fault",
        "500=1",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        root = first.rsplit(" ", 1)[-1]
        assert first.startswith("octopipe emulator listening on http://127.0.0.1:")
        request = urllib.request.Request(
            root + "/openai/v1/chat/completions", data=json.dumps(CHAT).encode(), method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == 500
    finally:
        process.terminate()
        assert process.wait(timeout=5) == 0


def test_cli_refuses_bad_options() -> None:
    command = [sys.executable, "-m", "octopipe.emulator", "--fault", "418=0.5"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert "unknown fault" in result.stderr
