"""What a provider can do is declared, not probed: every batch adapter says whether it finds
batches by metadata (``finder``) or lists them by size and time (``lister``); every realtime
adapter names its ``endpoint``; a plugin's adapter missing a declared member is refused when
it is made, naming the member."""

from __future__ import annotations

import pytest

from octopipe.emulator import EmulatorConfig, run_emulator
from octopipe.errors import UsageError
from octopipe.providers import ProviderSettings, make_provider
from octopipe.providers.catalog import _check_declared
from octopipe.testing import FakeBatchProvider
from support.provider_batch import BatchOpener as Opener


@pytest.mark.parametrize(
    ("vendor", "finds", "lists"),
    [("openai", True, False), ("gemini", True, False), ("anthropic", False, True)],
)
async def test_each_batch_adapter_declares_how_its_batches_are_found(
    open_batch: Opener, vendor: str, finds: bool, lists: bool
) -> None:
    async with run_emulator(EmulatorConfig()) as emu:
        provider = open_batch(emu, vendor)
        assert (provider.finder() is not None) is finds
        assert (provider.lister() is not None) is lists


def test_the_fake_batch_provider_lists_nothing_by_size() -> None:
    assert FakeBatchProvider().lister() is None


@pytest.mark.parametrize("vendor", ["openai", "anthropic", "gemini"])
def test_each_realtime_adapter_names_its_endpoint(vendor: str) -> None:
    url = "http://127.0.0.1:9/v1"
    provider = make_provider(ProviderSettings(vendor, "k", base_url=url))
    assert provider.endpoint is not None
    assert provider.endpoint.startswith("http://127.0.0.1:9")


class _NoEndpoint:
    name = "bare"

    async def complete(self, request: object) -> object:
        raise AssertionError("never called")

    async def aclose(self) -> None:
        return None


def test_an_adapter_without_a_declared_member_is_refused_naming_it() -> None:
    with pytest.raises(UsageError) as info:
        _check_declared("bare", _NoEndpoint())
    assert str(info.value) == (
        "provider 'bare': its realtime adapter lacks endpoint "
        "(see octopipe.providers.RealtimeProvider)"
    )
