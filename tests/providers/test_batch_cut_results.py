"""A batch's results download that arrives incomplete is reported, never passed off as whole.

Each adapter streams the lines it could read and then, when the download was cut (fewer bytes
than the provider says the file holds or than the response announced, a last line cut short,
a connection that broke), raises ``IncompleteResults`` so that the caller fetches the results
again instead of taking the missing lines as dropped. A complete download with a line the
provider really left out raises nothing: that request is simply missing.
"""

from __future__ import annotations

import pytest
from batch_builders import GEMINI_FILE, collect_all, lines, wait_terminal
from batch_builders import BatchOpener as Opener

from octopipe.errors import IncompleteResults, TransientProviderError
from octopipe.providers.batch_base import INTENT_KEY, BatchResultLine
from octopipe.providers.emulator import EmulatorConfig, run_emulator

# The vendors whose results are a file that can be cut (Gemini inline results are JSON).
WITH_FILES = ("openai", "anthropic", GEMINI_FILE)
META = {INTENT_KEY: "d-1"}


async def collect_until_cut(
    provider: object, handle: object
) -> tuple[list[BatchResultLine], IncompleteResults]:
    got: list[BatchResultLine] = []
    with pytest.raises(IncompleteResults) as cut:
        async for line in provider.collect(handle):  # type: ignore[attr-defined]
            got.append(line)
    return got, cut.value


@pytest.mark.parametrize("style", ["clean", "abort"])
@pytest.mark.parametrize("vendor", WITH_FILES)
async def test_a_cut_download_yields_its_complete_lines_then_says_it_was_cut(
    vendor: str, style: str, open_batch: Opener
) -> None:
    config = EmulatorConfig(batch_truncate_schedule=(True,), batch_truncate_style=style)
    async with run_emulator(config) as emu:
        provider = open_batch(emu, vendor)
        handle = await provider.submit(lines(5), model="emu-model", metadata=META)
        await wait_terminal(provider, handle)
        first, cut = await collect_until_cut(provider, handle)
        again = await collect_all(provider, handle)  # the next download is whole
        stats = emu.stats()

    assert isinstance(cut, TransientProviderError) and cut.retryable
    assert cut.certain
    assert cut.batch_id == handle.provider_batch_id
    assert handle.provider_batch_id in cut.message
    # the Gemini SDK writes a download in 1 MiB pieces: of a small file cut off, nothing arrives
    complete_lines = 0 if (vendor, style) == (GEMINI_FILE, "abort") else 4
    assert len(first) == complete_lines and all(r.response is not None for r in first)
    assert sorted(r.custom_id for r in again) == [f"b1-u{i}" for i in range(5)]
    assert stats["batch_downloads_cut"] == 1


@pytest.mark.parametrize("vendor", WITH_FILES)
async def test_every_cut_download_is_reported_until_one_arrives_whole(
    vendor: str, open_batch: Opener
) -> None:
    config = EmulatorConfig(batch_truncate_schedule=(True,), batch_truncate_downloads=3)
    async with run_emulator(config) as emu:
        provider = open_batch(emu, vendor)
        handle = await provider.submit(lines(4), model="emu-model", metadata=META)
        await wait_terminal(provider, handle)
        signatures = []
        for _ in range(3):
            _, cut = await collect_until_cut(provider, handle)
            signatures.append(cut.signature)
        whole = await collect_all(provider, handle)

    assert len(set(signatures)) == 1  # the same cut each time
    assert len(whole) == 4


@pytest.mark.parametrize("vendor", WITH_FILES)
async def test_a_dropped_line_in_a_complete_download_is_not_a_cut(
    vendor: str, open_batch: Opener
) -> None:
    config = EmulatorConfig(batch_line_fault_schedule=("ok", "dropped", "ok", "ok"))
    async with run_emulator(config) as emu:
        provider = open_batch(emu, vendor)
        handle = await provider.submit(lines(4), model="emu-model", metadata=META)
        await wait_terminal(provider, handle)
        results = await collect_all(provider, handle)  # raises nothing

    assert sorted(r.custom_id for r in results) == ["b1-u0", "b1-u2", "b1-u3"]


async def test_openai_error_file_cut_is_reported_too(open_batch: Opener) -> None:
    # a share of every download cut: with failed lines there are two files to cut
    config = EmulatorConfig(
        batch_line_fault_schedule=("failed", "400", "ok", "ok"), batch_truncate_rate=1.0
    )
    async with run_emulator(config) as emu:
        provider = open_batch(emu, "openai")
        handle = await provider.submit(lines(4), model="emu-model", metadata=META)
        await wait_terminal(provider, handle)
        first, cut = await collect_until_cut(provider, handle)
        stats = emu.stats()

    assert stats["batch_downloads_cut"] == 2  # the output file and the error file
    assert "file-" in cut.message
    assert len(first) == 2  # one complete line left in each file
