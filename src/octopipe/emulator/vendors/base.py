"""The contract each emulated vendor fulfils, and the pieces they share.

A vendor module turns an incoming JSON body into an ``EmulatorRequest`` and renders answers
and errors in its own wire format. The server owns everything else (latency, rate limits,
faults, counters), so adding an endpoint -- the batch APIs later -- means adding a route and a
parse/render pair here, not touching the request pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from octopipe.emulator.answers import Answer, EmulatorRequest


class InvalidRequest(Exception):
    """The body cannot be understood: answered with the vendor's 400."""


class UnknownEndpoint(Exception):
    """The path matched a route pattern but names no emulated operation: answered 404."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    endpoint: str
    """Stable label used in stats, e.g. ``openai.chat.completions``."""


FLEX_UNAVAILABLE = "flex_unavailable"
"""The error kind of a flex-tier request flex has no capacity for (``EmulatorConfig.
flex_unavailable_rate``); only vendors that ``serves_flex`` know it."""


class Vendor(Protocol):
    name: str
    serves_flex: bool
    """It accepts a ``service_tier: "flex"`` request (and can answer `FLEX_UNAVAILABLE`)."""

    def routes(self) -> list[Route]:
        """Paths relative to the vendor's mount point (see ``server.MOUNTS``)."""
        ...

    def parse(
        self, route: Route, body: Mapping[str, Any], match_info: Mapping[str, str]
    ) -> EmulatorRequest:
        """Raises ``InvalidRequest`` or ``UnknownEndpoint``."""
        ...

    def presented_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None: ...

    def success(self, request: EmulatorRequest, answer: Answer, request_id: str) -> Reply: ...

    def error(self, kind: str, *, model: str, retry_after: float | None, request_id: str) -> Reply:
        """``kind`` is a status fault (``"429"``, ``"500"`` ...) or ``"quota"``."""
        ...

    def without_answer(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A success body with the answer's container removed, usage kept (the
        ``shapeless`` fault)."""
        ...


def require(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(key)
    if not isinstance(value, kind):
        raise InvalidRequest(f"'{key}' is missing or has the wrong type")
    return value


def text_of(content: Any) -> str:
    """Text of a message content: a string, or a list of ``{"type": "text", "text": ...}``
    blocks/parts (other kinds are skipped)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def join_texts(texts: list[str]) -> str | None:
    joined = "\n\n".join(t for t in texts if t)
    return joined or None
