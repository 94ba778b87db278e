"""Fixtures for provider tests: an emulator per test and adapters pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

# Import the SDK adapters while collecting: each SDK takes about a second to import, which
# would otherwise be charged to whichever test happens to use it first.
import octopipe.providers.anthropic_adapter
import octopipe.providers.gemini_adapter
import octopipe.providers.openai_adapter  # noqa: F401
from octopipe.emulator import Emulator, EmulatorConfig, run_emulator
from octopipe.providers.base import ProviderSettings, RealtimeProvider
from octopipe.providers.batch_base import BatchProvider
from octopipe.providers.batch_gemini import GeminiBatchProvider
from octopipe.providers.catalog import make_batch_provider, make_provider
from support.provider_batch import GEMINI_FILE, BatchOpener
from support.providers import SECRET_KEY


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with run_emulator(EmulatorConfig()) as emu:
        yield emu


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[Emulator, str], RealtimeProvider]]:
    """``connect(emu, provider_name)`` -> an adapter aimed at ``emu``; closed after the test."""
    opened: list[RealtimeProvider] = []

    def build(emu: Emulator, name: str, **settings: Any) -> RealtimeProvider:
        fields: dict[str, Any] = {"api_key": SECRET_KEY, "base_url": emu.base_url_for(name)}
        fields.update(settings)
        provider = make_provider(ProviderSettings(provider=name, **fields))
        opened.append(provider)
        return provider

    yield build
    for provider in opened:
        await provider.aclose()


@pytest.fixture
async def open_batch() -> AsyncIterator[BatchOpener]:
    """``open_batch(emu, vendor)`` -> a batch adapter aimed at ``emu``; closed after the test.
    ``vendor`` may be ``GEMINI_FILE``."""
    opened: list[BatchProvider] = []

    def build(emu: Emulator, vendor: str) -> BatchProvider:
        name = "gemini" if vendor == GEMINI_FILE else vendor
        settings = ProviderSettings(
            provider=name, api_key=SECRET_KEY, base_url=emu.base_url_for(name), timeout_s=5.0
        )
        provider: BatchProvider = (
            GeminiBatchProvider(settings, inline_max_bytes=1)
            if vendor == GEMINI_FILE
            else make_batch_provider(settings)
        )
        opened.append(provider)
        return provider

    yield build
    for provider in opened:
        await provider.aclose()
