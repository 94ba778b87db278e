"""A batch's results download that arrives incomplete is reported, never passed off as whole.

Each adapter streams the lines it could read and then, when the download was cut (fewer bytes
than the provider says the file holds or than the response announced, a last line cut short,
a connection that broke), raises ``IncompleteResults`` so that the caller fetches the results
again instead of taking the missing lines as dropped. A complete download with a line the
provider really left out raises nothing: that request is simply missing.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from octopipe.emulator import EmulatorConfig, run_emulator
from octopipe.errors import IncompleteResults, TransientProviderError
from octopipe.providers.batch_base import INTENT_KEY, BatchResultLine, Download, check_complete
from support.provider_batch import GEMINI_FILE, collect_all, lines, wait_terminal
from support.provider_batch import BatchOpener as Opener

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


# --- the checks themselves, byte by byte ----------------------------------------------------

LINE = b'{"custom_id": "a-1", "result": {"type": "expired"}}'


def read(
    body: bytes, *, chunk: int = 7, expected: int | None = None, headers: Any = None
) -> Download:
    download = Download("file f", expected_bytes=expected)
    download.expect_length(headers or {})
    got = [line for i in range(0, len(body), chunk) for line in download.feed(body[i : i + chunk])]
    last = download.finish()
    assert got + ([last] if last is not None else []) == [
        line for line in body.split(b"\n") if line.strip() and _whole(line)
    ]
    return download


def _whole(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def verdict(downloads: list[Download], expected_lines: int | None) -> tuple[bool, str] | None:
    try:
        check_complete("anthropic", "b-9", downloads, expected_lines)
    except IncompleteResults as exc:
        return exc.certain, exc.message
    return None


def test_a_whole_file_is_complete() -> None:
    body = LINE + b"\n" + LINE + b"\n"
    download = read(body, expected=len(body))
    assert (download.bytes_read, download.lines, download.cut_line) == (len(body), 2, False)
    assert verdict([download], 2) is None


def test_a_last_line_cut_in_half_is_a_cut() -> None:
    download = read(LINE + b"\n" + LINE[:20])
    assert (download.lines, download.cut_line) == (2, True)
    assert verdict([download], None) == (
        True,
        "anthropic: the results of batch b-9 are incomplete (file f: its last line is cut short)",
    )


def test_a_last_line_without_its_newline_that_reads_whole_is_kept() -> None:
    download = read(LINE + b"\n" + LINE)
    assert (download.lines, download.cut_line) == (2, False)
    assert verdict([download], 2) is None


def test_a_connection_that_broke_is_a_cut() -> None:
    download = read(LINE + b"\n")
    download.fail(httpx2.RemoteProtocolError("peer closed connection"))
    certain, message = verdict([download], None) or (None, "")
    assert certain is True
    assert "the connection broke after 52 bytes (RemoteProtocolError)" in message


def test_fewer_bytes_than_reported_looks_cut() -> None:
    body = LINE + b"\n"
    assert verdict([read(body, expected=len(body) * 2)], None) == (
        False,
        "anthropic: the results of batch b-9 are incomplete (file f: 52 of 104 bytes)",
    )


def test_the_content_length_is_the_size_when_none_is_reported() -> None:
    body = LINE + b"\n"
    assert read(body, headers={"content-length": "999"}).expected_bytes == 999
    assert read(body, expected=52, headers={"content-length": "999"}).expected_bytes == 52
    # a compressed body's Content-Length counts compressed bytes: no use
    gzipped = {"content-length": "10", "content-encoding": "gzip"}
    assert read(body, headers=gzipped).expected_bytes is None


def test_fewer_lines_than_counted_looks_cut_only_without_a_size_to_check() -> None:
    body = LINE + b"\n"
    unsized = read(body)
    assert verdict([unsized], 3) == (
        False,
        "anthropic: the results of batch b-9 are incomplete (1 of the 3 lines the provider counts)",
    )
    # the size checks out: the provider dropped lines, the download is whole
    assert verdict([read(body, expected=len(body))], 3) is None
    assert verdict([unsized], 1) is None


def test_the_signature_tells_two_downloads_apart() -> None:
    def signature(body: bytes) -> tuple[int, ...]:
        try:
            check_complete("openai", "b", [read(body)], 5)
        except IncompleteResults as exc:
            return exc.signature
        raise AssertionError("not incomplete")

    assert signature(LINE + b"\n") == signature(LINE + b"\n") == (52, 1)
    assert signature(LINE + b"\n" + LINE + b"\n") == (104, 2)


@pytest.mark.parametrize("vendor", ["openai", GEMINI_FILE])
async def test_a_file_size_the_provider_will_not_tell_only_loses_that_check(
    vendor: str, open_batch: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused size lookup is no reason to think the results are gone (a 404 on a download
    resends the batch): the download is read and checked without the size."""
    from octopipe.emulator.batches import not_found
    from octopipe.emulator.vendors import gemini_files, openai_batch

    async def refuse(self: Any, http: Any) -> Any:
        return not_found(self.vendor, "file")

    monkeypatch.setattr(openai_batch.OpenAIBatchRoutes, "file_info", refuse)
    monkeypatch.setattr(gemini_files.GeminiFileRoutes, "get", refuse)
    config = EmulatorConfig(batch_truncate_schedule=(False, True))
    async with run_emulator(config) as emu:
        provider = open_batch(emu, vendor)
        whole = await provider.submit(lines(3, "w"), model="emu-model", metadata=META)
        cut = await provider.submit(lines(3, "c"), model="emu-model", metadata=META)
        await wait_terminal(provider, whole)
        await wait_terminal(provider, cut)
        results = await collect_all(provider, whole)
        got, incomplete = await collect_until_cut(provider, cut)

    assert sorted(r.custom_id for r in results) == ["w-u0", "w-u1", "w-u2"]
    assert incomplete.certain and len(got) == 2  # the cut last line still gives it away
