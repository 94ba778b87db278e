"""Finding a batch whose id was never recorded, on an account with many newer batches.

The engine records an *intent* before it submits a batch; after a crash between the vendor's
answer and the ledger's record, it searches the vendor's batch list for that intent. The list
is paged, newest first, and an account may hold any number of batches newer than the intent
(other runs, other programs): the search must page back until it reaches batches older than
the intent, never stop after a fixed number. The emulator's list endpoints page as each
vendor's do (OpenAI ``after``, Anthropic ``after_id`` / ``before_id``, Gemini ``pageToken``).
"""

from __future__ import annotations

import time
from typing import Any

import httpx2
import pytest

from octopipe.emulator import Emulator, EmulatorConfig, run_emulator
from octopipe.emulator.batches import BatchJob
from octopipe.providers.batch_base import INTENT_KEY
from support.provider_batch import BatchOpener as Opener
from support.provider_batch import lines

FOREIGN = 620  # more than any fixed scan limit a lister might keep (the old one was 500)


def add_foreign_batches(emu: Emulator, vendor: str, count: int = FOREIGN) -> list[BatchJob]:
    """``count`` batches of someone else on the same account, created now (so newer than
    anything submitted before), each with one request, as the vendor would list them."""
    store = emu.core.batches
    jobs = []
    for i in range(count):
        extra: dict[str, Any] = {}
        metadata = {INTENT_KEY: f"someone-else-{i}"} if vendor == "openai" else {}
        if vendor == "gemini":
            extra = {
                "display_name": f"octopipe?{INTENT_KEY}=someone-else-{i}",
                "line_metadata": [{}],
            }
        prefix = {"openai": "batch_", "anthropic": "msgbatch_", "gemini": "gbatch"}[vendor]
        jobs.append(
            store.create(
                vendor,
                "emu-model",
                [f"other-{i}"],
                ["a request of another program"],
                prefix=prefix,
                metadata=metadata,
                extra=extra,
            )
        )
    return jobs


@pytest.mark.parametrize("vendor", ["openai", "gemini"])
async def test_find_pages_back_past_hundreds_of_newer_batches(
    vendor: str, open_batch: Opener
) -> None:
    async with run_emulator(EmulatorConfig()) as emu:
        provider = open_batch(emu, vendor)
        since = time.time() - 1
        ours = await provider.submit(lines(3), model="emu-model", metadata={INTENT_KEY: "mine"})
        add_foreign_batches(emu, vendor)

        found = await provider.find(INTENT_KEY, "mine", since=since)
        nothing = await provider.find(INTENT_KEY, "nobody", since=since)
        requests = emu.stats()["requests"]

    assert [h.provider_batch_id for h in found] == [ours.provider_batch_id]
    assert nothing == []
    pages = requests[f"{vendor}.batches.list"]
    assert pages >= FOREIGN // 100  # it really paged, it did not get everything at once


@pytest.mark.parametrize("vendor", ["openai", "gemini"])
async def test_find_stops_at_batches_older_than_the_intent(vendor: str, open_batch: Opener) -> None:
    async with run_emulator(EmulatorConfig()) as emu:
        provider = open_batch(emu, vendor)
        old = add_foreign_batches(emu, vendor, 400)
        for job in old:  # created a day ago: older than any intent looked for
            job.created_wall -= 86_400
            job.created_mono -= 86_400
        since = time.time() - 1
        await provider.submit(lines(1), model="emu-model", metadata={INTENT_KEY: "mine"})

        assert [
            h.metadata[INTENT_KEY] for h in await provider.find(INTENT_KEY, "mine", since=since)
        ] == ["mine"]
        pages = emu.stats()["requests"][f"{vendor}.batches.list"]

    assert pages == 1  # the first page already reached batches older than the intent


async def test_anthropic_recent_pages_back_past_hundreds_of_newer_batches(
    open_batch: Opener,
) -> None:
    async with run_emulator(EmulatorConfig()) as emu:
        provider = open_batch(emu, "anthropic")
        lister = provider.lister()
        assert lister is not None  # Anthropic's batches are found by size and time
        since = time.time() - 1
        ours = await provider.submit(lines(3), model="emu-model", metadata={})
        add_foreign_batches(emu, "anthropic")

        recent = await lister.recent(since)

    assert len(recent) == FOREIGN + 1
    assert recent[-1] == (ours, 3)  # newest first: ours is the oldest


# --- the emulator's list endpoints page like the vendors' ------------------------------------


async def _get(emu: Emulator, vendor: str, path: str, **params: Any) -> dict[str, Any]:
    """One page of a list endpoint, over HTTP as a client would ask for it."""
    url = emu.base_url_for(vendor).rstrip("/") + path
    headers = {"x-api-key": "k", "Authorization": "Bearer k", "x-goog-api-key": "k"}
    async with httpx2.AsyncClient() as client:
        response = await client.get(url, params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_openai_list_pages_with_after_newest_first() -> None:
    async with run_emulator(EmulatorConfig()) as emu:
        jobs = add_foreign_batches(emu, "openai", 45)
        newest_first = [j.id for j in reversed(jobs)]
        first = await _get(emu, "openai", "/batches")  # default page: 20
        second = await _get(emu, "openai", "/batches", limit=20, after=first["last_id"])
        last = await _get(emu, "openai", "/batches", limit=100, after=second["last_id"])

    assert [b["id"] for b in first["data"]] == newest_first[:20]
    assert (first["first_id"], first["last_id"], first["has_more"]) == (
        newest_first[0],
        newest_first[19],
        True,
    )
    assert [b["id"] for b in second["data"]] == newest_first[20:40]
    assert [b["id"] for b in last["data"]] == newest_first[40:]
    assert last["has_more"] is False


async def test_anthropic_list_pages_with_after_id_and_before_id() -> None:
    async with run_emulator(EmulatorConfig()) as emu:
        jobs = add_foreign_batches(emu, "anthropic", 30)
        newest_first = [j.id for j in reversed(jobs)]
        first = await _get(emu, "anthropic", "/v1/messages/batches", limit=10)
        after = await _get(
            emu, "anthropic", "/v1/messages/batches", limit=10, after_id=first["last_id"]
        )
        before = await _get(
            emu, "anthropic", "/v1/messages/batches", limit=5, before_id=after["first_id"]
        )

    assert [b["id"] for b in first["data"]] == newest_first[:10]
    assert first["has_more"] is True
    assert [b["id"] for b in after["data"]] == newest_first[10:20]
    # before_id: the page just before (newer than) that batch, still newest first
    assert [b["id"] for b in before["data"]] == newest_first[5:10]
    assert before["has_more"] is True


async def test_gemini_list_pages_with_opaque_page_tokens() -> None:
    async with run_emulator(EmulatorConfig()) as emu:
        jobs = add_foreign_batches(emu, "gemini", 25)
        newest_first = [f"batches/{j.id}" for j in reversed(jobs)]
        first = await _get(emu, "gemini", "/v1beta/batches", pageSize=10)
        # a batch created while a client pages must not shift the pages it has not read yet
        add_foreign_batches(emu, "gemini", 1)
        second = await _get(
            emu, "gemini", "/v1beta/batches", pageSize=10, pageToken=first["nextPageToken"]
        )
        third = await _get(
            emu, "gemini", "/v1beta/batches", pageSize=10, pageToken=second["nextPageToken"]
        )

    assert [op["name"] for op in first["operations"]] == newest_first[:10]
    assert not first["nextPageToken"].isdigit()  # a cursor, not an offset
    assert [op["name"] for op in second["operations"]] == newest_first[10:20]
    assert [op["name"] for op in third["operations"]] == newest_first[20:]
    assert "nextPageToken" not in third
