"""The OpenAI and Anthropic adapters read the answer's JSON body themselves, over the SDKs'
aiohttp transport: what a canned HTTP server (a few bytes over loopback) makes of them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from octopipe.errors import MalformedResponse, ProviderTimeout, ProviderUnreachable
from octopipe.providers.base import ProviderSettings, RealtimeProvider, malformed
from octopipe.providers.catalog import make_provider
from octopipe.providers.json_answer import field, json_body
from support.providers import SECRET_KEY, make_request

VENDORS = ("openai", "anthropic")
SUFFIX = {"openai": "/v1", "anthropic": ""}
REQUEST_ID_HEADER = {"openai": "x-request-id", "anthropic": "request-id"}

OPENAI_BODY: dict[str, Any] = {
    "id": "chatcmpl-body-id",
    "object": "chat.completion",
    "model": "emu-model-2025",
    "service_tier": "default",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}
    ],
    "usage": {
        "prompt_tokens": 12,
        "completion_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 4},
    },
}
ANTHROPIC_BODY: dict[str, Any] = {
    "id": "msg-body-id",
    "type": "message",
    "role": "assistant",
    "model": "emu-model-2025",
    "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 8, "output_tokens": 3, "cache_read_input_tokens": 4},
}
BODY = {"openai": OPENAI_BODY, "anthropic": ANTHROPIC_BODY}

Reply = tuple[int, dict[str, str], bytes] | None  # None: hang up without answering


async def _serve(reply: Reply, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )  # fmt: skip
    await reader.readexactly(length)
    if reply is not None:
        status, headers, body = reply
        lines = [f"HTTP/1.1 {status} X", f"content-length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
    writer.close()


@pytest.fixture
async def canned() -> AsyncIterator[Callable[[str, Reply], Awaitable[RealtimeProvider]]]:
    """``canned(vendor, reply)``: an adapter pointed at a server giving every request ``reply``."""
    servers: list[asyncio.Server] = []
    providers: list[RealtimeProvider] = []

    async def start(vendor: str, reply: Reply) -> RealtimeProvider:
        server = await asyncio.start_server(
            lambda r, w: _serve(reply, r, w), "127.0.0.1", 0
        )  # fmt: skip
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}{SUFFIX[vendor]}"
        provider = make_provider(ProviderSettings(vendor, SECRET_KEY, base_url=url))
        providers.append(provider)
        return provider

    yield start
    for provider in providers:
        await provider.aclose()
    for server in servers:
        server.close()


def _json_reply(body: Any, **headers: str) -> Reply:
    return 200, {"content-type": "application/json", **headers}, json.dumps(body).encode()


@pytest.mark.parametrize("vendor", VENDORS)
async def test_answer_read_from_the_body_with_header_request_id(vendor: str, canned: Any) -> None:
    provider = await canned(
        vendor, _json_reply(BODY[vendor], **{REQUEST_ID_HEADER[vendor]: "req-h"})
    )
    response = await provider.complete(make_request())
    assert response.text == "hello"
    assert response.model == "emu-model-2025"
    assert response.request_id == "req-h"
    if vendor == "openai":
        assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
        assert response.usage.cached_input_tokens == 4
        assert response.finish_reason == "stop"
        assert response.service_tier == "default"
    else:  # cache reads are added back into input_tokens
        assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
        assert response.usage.cached_input_tokens == 4
        assert response.finish_reason == "end_turn"


@pytest.mark.parametrize("vendor", VENDORS)
async def test_request_id_falls_back_to_the_body_id(vendor: str, canned: Any) -> None:
    provider = await canned(vendor, _json_reply(BODY[vendor]))
    response = await provider.complete(make_request())
    assert response.request_id == BODY[vendor]["id"]


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_body_that_is_not_json_is_malformed_with_the_body_kept(
    vendor: str, canned: Any
) -> None:
    provider = await canned(vendor, (200, {"content-type": "text/html"}, b"<html>busy</html>"))
    with pytest.raises(MalformedResponse) as caught:
        await provider.complete(make_request())
    assert caught.value.raw == "<html>busy</html>"
    assert "not JSON" in caught.value.message


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_json_body_that_is_not_an_object_is_malformed(vendor: str, canned: Any) -> None:
    provider = await canned(vendor, _json_reply([1, 2]))
    with pytest.raises(MalformedResponse) as caught:
        await provider.complete(make_request())
    assert caught.value.raw == "[1, 2]"
    assert "list" in caught.value.message


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_body_missing_its_answer_is_malformed_with_usage(vendor: str, canned: Any) -> None:
    body = dict(BODY[vendor])
    body.pop("choices" if vendor == "openai" else "content")
    provider = await canned(vendor, _json_reply(body))
    with pytest.raises(MalformedResponse) as caught:
        await provider.complete(make_request())
    assert json.loads(caught.value.raw) == body
    assert caught.value.usage is not None
    assert caught.value.usage.output_tokens == 3


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_server_hanging_up_is_unreachable_not_a_timeout(vendor: str, canned: Any) -> None:
    provider = await canned(vendor, None)
    with pytest.raises(ProviderUnreachable) as caught:
        await provider.complete(make_request())
    assert not isinstance(caught.value, ProviderTimeout)
    assert "Disconnected" in caught.value.message


def test_json_body_keeps_undecodable_bytes_readable() -> None:
    with pytest.raises(MalformedResponse) as caught:
        json_body("openai", b"\xff\xfe not json")
    assert caught.value.raw.endswith(" not json")
    assert caught.value.usage is None


def test_field_reads_dicts_and_objects_and_defaults() -> None:
    class Obj:
        name = "o"

    assert field({"name": "d"}, "name") == "d"
    assert field(Obj(), "name") == "o"
    assert field({"other": 1}, "name", "none") == "none"
    assert field(None, "name") is None


def test_malformed_keeps_a_decoded_body_as_json() -> None:
    error = malformed("openai", "no choices", {"id": "x", "n": 1}, None)
    assert json.loads(error.raw) == {"id": "x", "n": 1}
