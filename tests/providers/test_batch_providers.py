"""Batch adapters through the real SDKs against the emulator's batch endpoints."""

from __future__ import annotations

import json
from typing import Any

import pytest

from octopipe.emulator import Emulator, EmulatorConfig, EmulatorRequest, run_emulator
from octopipe.errors import RateLimited, UsageError
from octopipe.providers.base import ProviderSettings
from octopipe.providers.batch_base import INTENT_KEY, BatchRequestLine
from octopipe.providers.catalog import catalog, make_batch_provider
from support.provider_batch import BatchOpener as Opener
from support.provider_batch import collect_all, lines, wait_terminal
from support.providers import make_request

VENDORS = ("openai", "anthropic", "gemini")
FINDABLE = ("openai", "gemini")
NATIVE_FIELD = {"openai": "response_format", "anthropic": "tool", "gemini": "responseJsonSchema"}


def batch_requests(emu: Emulator) -> list[EmulatorRequest]:
    return [
        r for job in emu.core.batches.jobs.values() for r in job.requests if not isinstance(r, str)
    ]


@pytest.mark.parametrize("vendor", VENDORS)
async def test_round_trip_of_five_requests(vendor: str, open_batch: Opener) -> None:
    async with run_emulator(EmulatorConfig(batch_delay_s=0.3)) as emu:
        provider = open_batch(emu, vendor)
        sent = lines()
        handle = await provider.submit(sent, model="emu-model", metadata={INTENT_KEY: "i-1"})
        assert handle.provider == vendor and handle.provider_batch_id
        first = await provider.poll(handle)
        assert first.state in ("validating", "in_progress")

        status = await wait_terminal(provider, handle)
        assert (status.state, status.done, status.total, status.failed) == ("completed", 5, 5, 0)

        results = await collect_all(provider, handle)
        assert sorted(r.custom_id for r in results) == sorted(line.custom_id for line in sent)
        for result in results:
            assert result.error is None and result.response is not None
            answer = json.loads(result.response.text)
            assert answer["verdict"] in ("pass", "fail")
            assert result.response.usage.input_tokens > 0
            assert result.response.usage.output_tokens > 0
        received = batch_requests(emu)
        assert len(received) == 5
        assert {r.structured_via for r in received} == {NATIVE_FIELD[vendor]}
        assert {r.model for r in received} == {"emu-model"}
        assert emu.stats()["batches_created"] == {vendor: 1}


@pytest.mark.parametrize("vendor", FINDABLE)
async def test_find_locates_a_forgotten_batch_by_metadata(vendor: str, open_batch: Opener) -> None:
    async with run_emulator(EmulatorConfig(batch_delay_s=0.2)) as emu:
        provider = open_batch(emu, vendor)
        await provider.submit(lines(2, "b1"), model="emu-model", metadata={INTENT_KEY: "intent-a"})
        lost = await provider.submit(
            lines(3, "b2"), model="emu-model", metadata={INTENT_KEY: "intent-b", "run": "r1"}
        )
        del lost  # the process "crashed" before recording the handle

        found = await provider.find(INTENT_KEY, "intent-b", since=0.0)
        assert len(found) == 1
        assert found[0].metadata == {INTENT_KEY: "intent-b", "run": "r1"}
        assert await provider.find(INTENT_KEY, "intent-zzz", since=0.0) == []

        status = await wait_terminal(provider, found[0])
        assert status.state == "completed"
        assert sorted(r.custom_id for r in await collect_all(provider, found[0])) == [
            "b2-u0",
            "b2-u1",
            "b2-u2",
        ]
        assert emu.stats()["batches_created"] == {vendor: 2}


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_finder_exists_exactly_where_the_spec_says_batches_can_be_found(
    vendor: str, open_batch: Opener
) -> None:
    """Anthropic batches carry no metadata: its adapter has no ``find`` to call by mistake."""
    async with run_emulator(EmulatorConfig()) as emu:
        provider = open_batch(emu, vendor)
        finder = provider.finder()
        assert (finder is not None) == catalog().spec(vendor).can_find
        assert (vendor, finder is None) in {
            ("openai", False),
            ("gemini", False),
            ("anthropic", True),
        }
        assert not hasattr(provider, "find") if finder is None else finder is provider


@pytest.mark.parametrize("vendor", VENDORS)
async def test_cancel_of_a_running_batch(vendor: str, open_batch: Opener) -> None:
    async with run_emulator(EmulatorConfig(batch_delay_s=60.0)) as emu:
        provider = open_batch(emu, vendor)
        handle = await provider.submit(lines(), model="emu-model", metadata={INTENT_KEY: "c"})
        assert (await provider.poll(handle)).state == "in_progress"
        await provider.cancel(handle)
        status = await wait_terminal(provider, handle)
        assert status.state == "cancelled"
        results = await collect_all(provider, handle)
        # cancelled long before any request finished (partial results: test_batch_faults)
        assert all(r.response is None for r in results)
        if vendor in ("openai", "anthropic"):  # Gemini delivers nothing for a cancelled job
            assert sorted(r.custom_id for r in results) == [f"b1-u{i}" for i in range(5)]
            assert {r.error.type for r in results if r.error} == {"cancelled"}


@pytest.mark.parametrize("vendor", VENDORS)
async def test_rate_limit_on_submit_is_rate_limited(vendor: str, open_batch: Opener) -> None:
    async with run_emulator(EmulatorConfig()) as emu:
        provider = open_batch(emu, vendor)
        emu.inject("429")
        with pytest.raises(RateLimited):
            await provider.submit(lines(), model="emu-model", metadata={INTENT_KEY: "r"})
        assert emu.stats()["batches_created"] == {}
        handle = await provider.submit(lines(), model="emu-model", metadata={INTENT_KEY: "r"})
        assert (await wait_terminal(provider, handle)).state == "completed"
        assert emu.stats()["batches_created"] == {vendor: 1}


@pytest.mark.parametrize("vendor", VENDORS)
async def test_failed_requests_come_back_as_line_errors(vendor: str, open_batch: Opener) -> None:
    def answer(request: EmulatorRequest) -> str | dict[str, Any]:
        if "BOOM" in request.prompt:
            raise RuntimeError("answer function failed")
        return {"verdict": "pass", "score": 3, "reasons": ["fine"]}

    async with run_emulator(EmulatorConfig(answer_fn=answer)) as emu:
        provider = open_batch(emu, vendor)
        sent = [*lines(2), *lines(1, "bad", prompt="BOOM")]
        handle = await provider.submit(sent, model="emu-model", metadata={INTENT_KEY: "e"})
        status = await wait_terminal(provider, handle)
        assert status.state == "completed"
        assert status.failed == 1
        by_id = {r.custom_id: r for r in await collect_all(provider, handle)}
        assert set(by_id) == {"b1-u0", "b1-u1", "bad-u0"}
        failed = by_id["bad-u0"]
        assert failed.response is None and failed.error is not None
        assert failed.error.type == "TransientProviderError"
        assert failed.error.status == 500 and failed.error.retryable
        assert by_id["b1-u0"].response is not None


@pytest.mark.parametrize("custom_id", ["", "has space", "x" * 65, "dot.ted"])
async def test_bad_custom_ids_are_refused_before_sending(
    custom_id: str, open_batch: Opener
) -> None:
    async with run_emulator(EmulatorConfig()) as emu:
        provider = open_batch(emu, "openai")
        bad = [BatchRequestLine(custom_id, make_request())]
        with pytest.raises(UsageError, match="custom_id"):
            await provider.submit(bad, model="emu-model", metadata={})
        assert emu.stats()["requests_total"] == 0


async def test_duplicate_custom_ids_are_refused(open_batch: Opener) -> None:
    async with run_emulator(EmulatorConfig()) as emu:
        provider = open_batch(emu, "anthropic")
        dup = [BatchRequestLine("a-1", make_request()), BatchRequestLine("a-1", make_request())]
        with pytest.raises(UsageError, match="twice"):
            await provider.submit(dup, model="emu-model", metadata={})


def test_openai_compatible_has_no_batch_api() -> None:
    with pytest.raises(UsageError, match="no batch API"):
        make_batch_provider(ProviderSettings(provider="openai-compatible", api_key="k"))
