"""Batch failure modes, end to end: the emulator plays each vendor's failure, the adapter
(through the real SDK) turns it into vendor-neutral results.

``gemini-file`` is Gemini with a tiny inline limit, so its batches go through the Files API
(resumable upload, results file download) instead of inline requests.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from octopipe.emulator import Emulator, EmulatorConfig, run_emulator
from octopipe.errors import IncompleteResults, RateLimited
from octopipe.providers.batch_anthropic import AnthropicBatchProvider
from octopipe.providers.batch_base import INTENT_KEY, BatchLineError, BatchResultLine, not_run
from octopipe.providers.batch_openai import OpenAIBatchProvider
from support.provider_batch import GEMINI_FILE, collect_all, lines, wait_terminal
from support.provider_batch import BatchOpener as Opener

VENDORS = ("openai", "anthropic", "gemini")
WITH_FILES = (*VENDORS, GEMINI_FILE)
# Vendors that keep the answers of requests finished before a batch expired or was cancelled
# (Gemini keeps no output for an expired or cancelled job).
SALVAGING = ("openai", "anthropic")
META = {INTENT_KEY: "i-1"}


def by_id(results: list[BatchResultLine]) -> dict[str, BatchResultLine]:
    assert len({r.custom_id for r in results}) == len(results), "a custom_id came back twice"
    return {r.custom_id: r for r in results}


def answered(results: list[BatchResultLine]) -> list[str]:
    return sorted(r.custom_id for r in results if r.response is not None)


def error_of(result: BatchResultLine) -> BatchLineError:
    assert result.response is None and result.error is not None
    return result.error


@pytest.mark.parametrize("vendor", VENDORS)
async def test_expired_batch_keeps_the_requests_finished_before_the_deadline(
    vendor: str, open_batch: Opener
) -> None:
    # 6 requests over 0.4 s, deadline at 0.2 s: the first 3 (input order) finished.
    config = EmulatorConfig(batch_delay_s=0.4, batch_expire_s=0.2)
    async with run_emulator(config) as emu:
        provider = open_batch(emu, vendor)
        handle = await provider.submit(lines(6), model="emu-model", metadata=META)
        status = await wait_terminal(provider, handle)
        assert status.state == "expired"
        results = by_id(await collect_all(provider, handle))

    if vendor not in SALVAGING:
        assert results == {}
        return
    assert (status.done, status.total, status.failed) == (6, 6, 3)
    assert answered(list(results.values())) == ["b1-u0", "b1-u1", "b1-u2"]
    for custom_id in ("b1-u3", "b1-u4", "b1-u5"):
        error = error_of(results[custom_id])
        assert (error.type, error.status, error.retryable) == ("expired", None, True)
    answer = results["b1-u0"].response
    assert answer is not None and json.loads(answer.text)["verdict"] in ("pass", "fail")


@pytest.mark.parametrize("vendor", VENDORS)
async def test_cancelled_batch_keeps_the_requests_finished_before_the_cancel(
    vendor: str, open_batch: Opener
) -> None:
    async with run_emulator(EmulatorConfig(batch_delay_s=1.0)) as emu:
        provider = open_batch(emu, vendor)
        sent = [line.custom_id for line in lines(10)]
        handle = await provider.submit(lines(10), model="emu-model", metadata=META)
        await asyncio.sleep(0.45)  # about 4 of the 10 requests have finished
        await provider.cancel(handle)
        status = await wait_terminal(provider, handle)
        assert status.state == "cancelled"
        results = by_id(await collect_all(provider, handle))

    if vendor not in SALVAGING:
        assert results == {}
        return
    assert sorted(results) == sorted(sent)
    finished = [r.custom_id for r in results.values() if r.response is not None]
    assert 1 <= len(finished) <= 9
    # requests finish in input order, so the salvaged ones are a prefix of the batch
    assert sorted(finished) == sorted(sent[: len(finished)])
    for custom_id in sent[len(finished) :]:
        error = error_of(results[custom_id])
        assert (error.type, error.status, error.retryable) == ("cancelled", None, True)


@pytest.mark.parametrize("vendor", WITH_FILES)
async def test_failed_lines_keep_the_realtime_error_class(vendor: str, open_batch: Opener) -> None:
    config = EmulatorConfig(batch_line_fault_schedule=("ok", "failed", "400", "ok"))
    async with run_emulator(config) as emu:
        provider = open_batch(emu, vendor)
        handle = await provider.submit(lines(4), model="emu-model", metadata=META)
        status = await wait_terminal(provider, handle)
        results = by_id(await collect_all(provider, handle))

    assert status.state == "completed"
    if vendor != GEMINI_FILE:  # no counts for a file-based Gemini job
        assert (status.total, status.failed) == (4, 2)
    assert answered(list(results.values())) == ["b1-u0", "b1-u3"]
    server = error_of(results["b1-u1"])
    assert (server.type, server.status, server.retryable) == ("TransientProviderError", 500, True)
    invalid = error_of(results["b1-u2"])
    assert (invalid.type, invalid.status, invalid.retryable) == ("BadRequest", 400, False)


@pytest.mark.parametrize("vendor", WITH_FILES)
async def test_a_dropped_line_is_simply_absent(vendor: str, open_batch: Opener) -> None:
    config = EmulatorConfig(batch_line_fault_schedule=("ok", "dropped", "ok"))
    async with run_emulator(config) as emu:
        provider = open_batch(emu, vendor)
        handle = await provider.submit(lines(3), model="emu-model", metadata=META)
        assert (await wait_terminal(provider, handle)).state == "completed"
        results = by_id(await collect_all(provider, handle))
        assert emu.stats()["batch_lines_dropped"] == 1

    assert sorted(results) == ["b1-u0", "b1-u2"]
    assert answered(list(results.values())) == ["b1-u0", "b1-u2"]


@pytest.mark.parametrize("vendor", ("openai", "anthropic", GEMINI_FILE))
async def test_a_truncated_results_file_yields_every_complete_line(
    vendor: str, open_batch: Opener
) -> None:
    config = EmulatorConfig(batch_truncate_schedule=(True, False))
    async with run_emulator(config) as emu:
        provider = open_batch(emu, vendor)
        cut = await provider.submit(lines(5, "cut"), model="emu-model", metadata=META)
        whole = await provider.submit(lines(5, "whole"), model="emu-model", metadata=META)
        await wait_terminal(provider, cut)
        await wait_terminal(provider, whole)
        got: list[BatchResultLine] = []
        with pytest.raises(IncompleteResults):  # and says so (test_batch_downloads)
            async for line in provider.collect(cut):
                got.append(line)
        cut_results = by_id(got)
        whole_results = by_id(await collect_all(provider, whole))

    assert len(cut_results) == 4  # the last line of the file was cut in half
    assert set(cut_results) < {f"cut-u{i}" for i in range(5)}
    assert all(r.response is not None for r in cut_results.values())
    assert answered(list(whole_results.values())) == [f"whole-u{i}" for i in range(5)]


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_batch_that_fails_as_a_whole(vendor: str, open_batch: Opener) -> None:
    async with run_emulator(EmulatorConfig(batch_fail_schedule=(True,))) as emu:
        provider = open_batch(emu, vendor)
        failed = await provider.submit(lines(3), model="emu-model", metadata=META)
        status = await wait_terminal(provider, failed)
        results = by_id(await collect_all(provider, failed))
        after = await provider.submit(lines(2, "b2"), model="emu-model", metadata=META)
        assert (await wait_terminal(provider, after)).state == "completed"

    if vendor == "anthropic":  # no batch-level failure: every request errored instead
        assert (status.state, status.total, status.failed) == ("completed", 3, 3)
        assert sorted(results) == ["b1-u0", "b1-u1", "b1-u2"]
        assert {error_of(r).type for r in results.values()} == {"TransientProviderError"}
        return
    assert status.state == "failed"
    expected = {"openai": "batch_failed", "gemini": "JOB_STATE_FAILED"}[vendor]
    assert status.error is not None and expected in status.error
    assert results == {}


@pytest.mark.parametrize("vendor", VENDORS)
async def test_rate_limited_submits_create_no_batch(vendor: str, open_batch: Opener) -> None:
    async with run_emulator(EmulatorConfig(batch_submit_faults=("429", "429", "ok"))) as emu:
        provider = open_batch(emu, vendor)
        for _ in range(2):
            with pytest.raises(RateLimited) as refused:
                await provider.submit(lines(2), model="emu-model", metadata=META)
            assert refused.value.retry_after == 1.0
        assert emu.stats()["batches_created"] == {}
        handle = await provider.submit(lines(2), model="emu-model", metadata=META)
        assert (await wait_terminal(provider, handle)).state == "completed"
        stats = emu.stats()

    assert stats["batches_created"] == {vendor: 1}
    assert stats["status_429"] == 2
    if vendor == "openai":  # the input file uploads were never refused
        assert stats["requests"]["openai.files.create"] == 3


async def test_gemini_file_based_round_trip(open_batch: Opener) -> None:
    async with run_emulator(EmulatorConfig(batch_delay_s=0.2)) as emu:
        provider = open_batch(emu, GEMINI_FILE)
        sent = lines(3)
        handle = await provider.submit(sent, model="emu-model", metadata={INTENT_KEY: "f-1"})
        assert handle.metadata == {INTENT_KEY: "f-1"}
        assert (await provider.poll(handle)).state == "in_progress"
        status = await wait_terminal(provider, handle)
        results = by_id(await collect_all(provider, handle))
        (job,) = emu.core.batches.jobs.values()
        stats = emu.stats()

    assert status.state == "completed"
    assert answered(list(results.values())) == ["b1-u0", "b1-u1", "b1-u2"]
    for result in results.values():
        assert result.response is not None
        assert json.loads(result.response.text)["verdict"] in ("pass", "fail")
        assert result.response.usage.input_tokens > 0
    assert job.extra["input_file"].startswith("files/")
    assert job.keys == ["b1-u0", "b1-u1", "b1-u2"]
    assert {r.structured_via for r in job.requests if not isinstance(r, str)} == {
        "responseJsonSchema"
    }
    assert stats["requests"]["gemini.files.upload"] == 1
    assert stats["requests"]["gemini.files.download"] == 1


async def test_small_gemini_batches_stay_inline(open_batch: Opener) -> None:
    async with run_emulator(EmulatorConfig()) as emu:
        provider = open_batch(emu, "gemini")
        await provider.submit(lines(2), model="emu-model", metadata=META)
        (job,) = emu.core.batches.jobs.values()
        assert "input_file" not in job.extra
        assert "gemini.files.upload" not in emu.stats()["requests"]


async def test_unreadable_lines_in_the_middle_of_a_file_are_skipped(
    emulator: Emulator, open_batch: Opener
) -> None:
    provider = open_batch(emulator, "openai")
    assert isinstance(provider, OpenAIBatchProvider)
    handle = await provider.submit(lines(3), model="emu-model", metadata=META)
    await wait_terminal(provider, handle)
    (job,) = emulator.core.batches.jobs.values()
    output, errors = job.extra["result_files"]
    good = output.decode().splitlines()
    garbage = [
        "{not json",
        '{"response": {"status_code": 200, "body": {}}}',  # no custom_id
        '{"custom_id": "x-1", "response": {"status_code": 200, "body": {"choices": 3}}}',
        "[1, 2]",
    ]
    mixed = [good[0], *garbage[:2], good[1], *garbage[2:], good[2]]
    job.extra["result_files"] = (("\n".join(mixed) + "\n").encode(), errors)

    results = by_id(await collect_all(provider, handle))

    assert answered(list(results.values())) == ["b1-u0", "b1-u1", "b1-u2"]


@pytest.mark.parametrize(
    "raw",
    [
        '{"custom_id": "a-1", "result": {"type": "succ',
        '{"custom_id": "a-1", "result": {"type": "succeeded", "message": {"content": 5}}}',
        '{"custom_id": "a-1", "result": {"type": "mystery"}}',
        '{"result": {"type": "canceled"}}',
        '"just a string"',
    ],
)
async def test_anthropic_skips_a_result_line_it_cannot_read(
    raw: str, emulator: Emulator, open_batch: Opener
) -> None:
    provider = open_batch(emulator, "anthropic")
    assert isinstance(provider, AnthropicBatchProvider)
    assert provider._read_line(raw, "msgbatch_x") is None
    expired = provider._read_line('{"custom_id": "a-1", "result": {"type": "expired"}}', "b")
    assert expired == BatchResultLine("a-1", None, not_run("expired"))
