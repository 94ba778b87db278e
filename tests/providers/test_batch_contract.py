"""The ``BatchProvider`` contract (``providers/batch_base.py``), one suite for every provider:
the three vendor adapters through their SDKs against the emulator (Gemini twice: inline and
file-based jobs) and the in-process ``octopipe.testing.FakeBatchProvider`` the engine tests
use. What the engine relies on is here; vendor quirks stay in ``test_batch_providers.py``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from octopipe.emulator import EmulatorConfig, EmulatorRequest, run_emulator
from octopipe.errors import ProviderError, TransientProviderError, UsageError
from octopipe.providers.batch_base import (
    INTENT_KEY,
    BatchHandle,
    BatchProvider,
    BatchRequestLine,
    line_error,
)
from octopipe.testing import FakeBatchProvider
from support.provider_batch import GEMINI_FILE, BatchOpener, collect_all, lines, wait_terminal

BACKENDS = ("openai", "anthropic", "gemini", GEMINI_FILE, "fake")
GOOD = {"verdict": "pass", "score": 3, "reasons": ["fine"]}
Make = Callable[..., Awaitable[BatchProvider]]


def _emulator_answer(request: EmulatorRequest) -> dict[str, Any]:
    if "BOOM" in request.prompt:
        raise RuntimeError("answer function failed")  # the emulator's 500 for that request
    return GOOD


def _fake_answer(line: BatchRequestLine) -> Any:
    if "BOOM" in line.request.prompt:
        return line_error(TransientProviderError("server error", provider="fake", status=500))
    return GOOD


@pytest.fixture
async def make(open_batch: BatchOpener) -> AsyncIterator[Make]:
    """``await make(backend, running=False)`` -> a provider whose batches end by themselves
    within a few polls, or (``running``) stay running until cancelled."""
    async with contextlib.AsyncExitStack() as stack:

        async def build(backend: str, *, running: bool = False) -> BatchProvider:
            if backend == "fake":
                return FakeBatchProvider(
                    answer=_fake_answer, polls_to_finish=None if running else 2
                )
            config = EmulatorConfig(
                answer_fn=_emulator_answer, batch_delay_s=60.0 if running else 0.2
            )
            emu = await stack.enter_async_context(run_emulator(config))
            return open_batch(emu, backend)

        yield build


@pytest.mark.parametrize("backend", BACKENDS)
async def test_it_is_a_batch_provider(backend: str, make: Make) -> None:
    provider = await make(backend)
    assert isinstance(provider, BatchProvider)
    assert provider.name == ("gemini" if backend == GEMINI_FILE else backend)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_submit_poll_collect(backend: str, make: Make) -> None:
    provider = await make(backend)
    sent = lines(4)
    handle = await provider.submit(sent, model="emu-model", metadata={INTENT_KEY: "i-1"})
    assert handle.provider == provider.name and handle.provider_batch_id
    status = await wait_terminal(provider, handle)
    assert status.state == "completed"
    # counts, where the vendor reports them (Gemini's file jobs do not: total 0), are exact
    assert (status.done, status.total, status.failed) in ((4, 4, 0), (0, 0, 0))
    results = await collect_all(provider, handle)
    # one line per request, in no particular order: joined on custom_id
    assert sorted(r.custom_id for r in results) == sorted(line.custom_id for line in sent)
    for result in results:
        assert result.error is None and result.response is not None
        assert json.loads(result.response.text) == GOOD
        usage = result.response.usage
        assert usage.input_tokens > 0 and usage.output_tokens > 0


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_failed_request_is_a_line_error_and_the_others_are_answered(
    backend: str, make: Make
) -> None:
    provider = await make(backend)
    sent = [*lines(2), *lines(1, "bad", prompt="BOOM")]
    handle = await provider.submit(sent, model="emu-model", metadata={INTENT_KEY: "e"})
    status = await wait_terminal(provider, handle)
    assert status.state == "completed"
    assert (status.total, status.failed) in ((3, 1), (0, 0))
    by_id = {r.custom_id: r for r in await collect_all(provider, handle)}
    assert set(by_id) == {"b1-u0", "b1-u1", "bad-u0"}
    failed = by_id["bad-u0"]
    assert failed.response is None and failed.error is not None
    assert (failed.error.type, failed.error.status, failed.error.retryable) == (
        "TransientProviderError",
        500,
        True,
    )
    assert by_id["b1-u0"].response is not None and by_id["b1-u0"].error is None


@pytest.mark.parametrize("backend", BACKENDS)
async def test_find_adopts_a_batch_by_intent_or_has_no_finder(backend: str, make: Make) -> None:
    provider = await make(backend)
    await provider.submit(lines(2, "b1"), model="emu-model", metadata={INTENT_KEY: "intent-a"})
    await provider.submit(lines(3, "b2"), model="emu-model", metadata={INTENT_KEY: "intent-b"})
    finder = provider.finder()
    if finder is None:
        # absence of the feature is never an answer of "nothing found": there is no find
        assert not hasattr(provider, "find") or backend == "fake"
        return
    (found,) = await finder.find(INTENT_KEY, "intent-b", since=0.0)
    assert isinstance(found, BatchHandle) and found.metadata[INTENT_KEY] == "intent-b"
    assert await finder.find(INTENT_KEY, "intent-zzz", since=0.0) == []
    assert (await wait_terminal(provider, found)).state == "completed"
    assert sorted(r.custom_id for r in await collect_all(provider, found)) == [
        "b2-u0",
        "b2-u1",
        "b2-u2",
    ]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_cancel_of_a_running_batch(backend: str, make: Make) -> None:
    provider = await make(backend, running=True)
    handle = await provider.submit(lines(3), model="emu-model", metadata={INTENT_KEY: "c"})
    status = await provider.poll(handle)
    assert not status.terminal and status.total in (0, 3)
    await provider.cancel(handle)
    assert (await wait_terminal(provider, handle)).state == "cancelled"
    results = await collect_all(provider, handle)
    # nothing had finished: no answer; a request reported is reported as never run
    assert all(r.response is None for r in results)
    assert {r.error.type for r in results if r.error} <= {"cancelled"}
    assert {r.custom_id for r in results} <= {line.custom_id for line in lines(3)}


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_batch_the_provider_does_not_know_is_a_404(backend: str, make: Make) -> None:
    provider = await make(backend)
    real = await provider.submit(lines(1), model="emu-model", metadata={INTENT_KEY: "x"})
    unknown = BatchHandle(provider.name, _unknown_id(real.provider_batch_id), 0.0)
    with pytest.raises(ProviderError) as caught:
        await provider.poll(unknown)
    assert caught.value.status == 404 and not caught.value.fatal_for_run


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("custom_id", ["", "has space", "x" * 65])
async def test_bad_custom_ids_are_refused_before_sending(
    backend: str, custom_id: str, make: Make
) -> None:
    provider = await make(backend)
    bad = [BatchRequestLine(custom_id, lines(1)[0].request)]
    with pytest.raises(UsageError, match="custom_id"):
        await provider.submit(bad, model="emu-model", metadata={})


def _unknown_id(real: str) -> str:
    """An id of the provider's own shape that it never gave out."""
    head = real.rstrip("0123456789abcdefABCDEF-_")
    return f"{head}999999" if head else "batch_999999"
