"""Builders shared by the batch tests (``from support.providers import ...``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from octopipe.emulator import Emulator
from octopipe.providers.batch_base import (
    BatchHandle,
    BatchProvider,
    BatchRequestLine,
    BatchResultLine,
    BatchStatus,
)
from support.providers import VERDICT_SCHEMA, make_request

BatchOpener = Callable[[Emulator, str], BatchProvider]
"""The ``open_batch`` fixture: ``open_batch(emu, vendor)`` -> an adapter aimed at ``emu``."""
GEMINI_FILE = "gemini-file"
"""A batch "vendor" for tests: Gemini forced onto file-based jobs (tiny inline limit)."""


def lines(count: int = 5, batch: str = "b1", prompt: str = "Judge story") -> list[BatchRequestLine]:
    """``count`` structured-output requests with custom ids ``{batch}-u0`` ... in order."""
    return [
        BatchRequestLine(
            f"{batch}-u{i}",
            make_request(
                unit_id=f"unit-{i}", prompt=f"{prompt} number {i}.", schema=VERDICT_SCHEMA
            ),
        )
        for i in range(count)
    ]


async def wait_terminal(provider: BatchProvider, handle: BatchHandle) -> BatchStatus:
    for _ in range(100):
        status = await provider.poll(handle)
        if status.terminal:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError("the batch did not end")


async def collect_all(provider: BatchProvider, handle: BatchHandle) -> list[BatchResultLine]:
    return [line async for line in provider.collect(handle)]
