"""The HTTP client under the realtime adapters: the SDKs' own aiohttp transport.

``http_client(sdk, timeout_s)`` returns the SDK's ``DefaultAioHttpClient`` (the SDK's
defaults -- connection limits, redirects -- over aiohttp instead of httpcore), which the
official OpenAI and Anthropic SDKs ship for high-concurrency use. Why: with 32 or more calls
in flight, httpcore's pool checks every pooled connection for expiry on each request and each
response close, which cost about a third of the client's CPU per call at 0 ms latency.
Guarantees: the SDK's request options, auth, per-request timeouts and error types are kept
(aiohttp errors come back as httpx errors, which the SDK wraps as ``APIConnectionError`` /
``APITimeoutError``; ``errors_map.timed_out`` tells a refused connection from a timeout);
the aiohttp session is created on the first request, inside the running event loop, and is
closed by the client's ``close()``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any


def http_client(sdk: ModuleType, timeout_s: float) -> Any:
    """The ``sdk`` module's (``openai`` or ``anthropic``) aiohttp-based async HTTP client."""
    return sdk.DefaultAioHttpClient(timeout=timeout_s)


__all__ = ["http_client"]
