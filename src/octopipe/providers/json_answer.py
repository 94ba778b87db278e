"""An answer's JSON body, read by the adapter itself instead of through the SDK's models.

The realtime adapters send through the SDKs' lower-level ``post(..., cast_to=httpx2.Response)``
and read the body here: building the SDK's pydantic models for every answer (and its
request-parameter transform) was most of the client's CPU per call. Guarantees:

- ``json_body`` returns the decoded JSON object of a response, or raises
  ``MalformedResponse`` keeping the body (truncated) when it is not JSON or not an object:
  an answer that is unreadable never escapes as a ``ValueError``.
- ``field`` reads one member of a decoded object (or, for callers still holding SDK objects,
  an attribute) and never raises: what is missing reads as ``default``.
"""

from __future__ import annotations

from typing import Any

from octopipe import fastjson
from octopipe.errors import MalformedResponse
from octopipe.providers.base import MAX_RAW_CHARS


def json_body(provider: str, content: bytes) -> dict[str, Any]:
    """The JSON object in ``content``; ``MalformedResponse`` when there is none."""
    try:
        body = fastjson.loads(content)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise MalformedResponse(
            f"malformed answer: the body is not JSON ({exc})"[:300],
            provider=provider,
            raw=content[:MAX_RAW_CHARS].decode("utf-8", "replace"),
            usage=None,
        ) from None
    if not isinstance(body, dict):
        raise MalformedResponse(
            f"malformed answer: the body is a JSON {type(body).__name__}, not an object",
            provider=provider,
            raw=content[:MAX_RAW_CHARS].decode("utf-8", "replace"),
            usage=None,
        )
    return body


def field(value: Any, name: str, default: Any = None) -> Any:
    """``value[name]`` of a decoded object, ``value.name`` of an SDK object, else ``default``."""
    if isinstance(value, dict):
        return value.get(name, default)
    return getattr(value, name, default)


__all__ = ["field", "json_body"]
