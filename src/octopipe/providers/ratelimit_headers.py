"""Account rate limits as the vendors state them in response headers.

``parse_ratelimit_headers`` reads OpenAI's ``x-ratelimit-*`` and Anthropic's
``anthropic-ratelimit-*`` headers into one ``StatedLimits``. Guarantees: it never raises; a
header that is absent leaves its field ``None``; a header whose value is malformed is ignored
and logged once per call at WARNING with its name and value. Gemini states no limits, so its
responses give an empty ``StatedLimits`` and configured pacing stays in force.
``stated_limits`` is the adapters' entry point: the limits a response's headers state, read
against the clock now, or ``None`` when they state none.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


@dataclass(frozen=True)
class StatedLimits:
    """Per-minute limits and what is left of them, as one response stated them."""

    requests_limit: int | None = None
    tokens_limit: int | None = None
    requests_remaining: int | None = None
    tokens_remaining: int | None = None
    requests_reset_s: float | None = None
    tokens_reset_s: float | None = None

    @property
    def empty(self) -> bool:
        """True when the response stated nothing about limits."""
        return all(getattr(self, name) is None for name in self.__dataclass_fields__)


def stated_limits(headers: Mapping[str, str] | None) -> StatedLimits | None:
    """The limits ``headers`` state (resets measured from now); ``None`` when they state none."""
    if not headers:
        return None
    limits = parse_ratelimit_headers(headers, time.time())
    return None if limits.empty else limits


def parse_duration(text: str) -> float:
    """Seconds in an OpenAI reset duration such as ``6m0s``, ``1s``, ``120ms``, ``1h2m3.5s``.

    Raises ``ValueError`` when ``text`` is not entirely made of such parts.
    """
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def parse_rfc3339_delay(text: str, now_epoch: float) -> float:
    """Seconds from ``now_epoch`` until the RFC 3339 instant ``text`` (never below 0).

    Raises ``ValueError`` when ``text`` is not an RFC 3339 timestamp with an offset.
    """
    instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if instant.tzinfo is None:
        raise ValueError(f"timestamp without offset: {text!r}")
    return max(0.0, instant.timestamp() - now_epoch)


def parse_ratelimit_headers(headers: Mapping[str, str], now_epoch: float) -> StatedLimits:
    """Read whichever vendor's rate-limit headers ``headers`` carries (names case-insensitive)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if any(k.startswith("anthropic-ratelimit-") for k in lowered):
        return _anthropic(lowered, now_epoch)
    return _openai(lowered)


def _openai(h: dict[str, str]) -> StatedLimits:
    p = "x-ratelimit-"
    return StatedLimits(
        requests_limit=_int(h, p + "limit-requests"),
        tokens_limit=_int(h, p + "limit-tokens"),
        requests_remaining=_int(h, p + "remaining-requests"),
        tokens_remaining=_int(h, p + "remaining-tokens"),
        requests_reset_s=_value(h, p + "reset-requests", parse_duration),
        tokens_reset_s=_value(h, p + "reset-tokens", parse_duration),
    )


def _anthropic(h: dict[str, str], now_epoch: float) -> StatedLimits:
    p = "anthropic-ratelimit-"

    def delay(text: str) -> float:
        return parse_rfc3339_delay(text, now_epoch)

    return StatedLimits(
        requests_limit=_int(h, p + "requests-limit"),
        tokens_limit=_int(h, p + "tokens-limit"),
        requests_remaining=_int(h, p + "requests-remaining"),
        tokens_remaining=_int(h, p + "tokens-remaining"),
        requests_reset_s=_value(h, p + "requests-reset", delay),
        tokens_reset_s=_value(h, p + "tokens-reset", delay),
    )


def _int(h: dict[str, str], name: str) -> int | None:
    return _value(h, name, _non_negative_int)


def _non_negative_int(text: str) -> int:
    number = int(text.strip())
    if number < 0:
        raise ValueError(f"negative count: {text!r}")
    return number


def _value(h: dict[str, str], name: str, parse: Callable[[str], T]) -> T | None:
    text = h.get(name)
    if text is None:
        return None
    try:
        return parse(text.strip())
    except ValueError:
        log.warning("ignoring malformed rate-limit header %s: %r", name, text)
        return None
