"""Account-wide rate limits the client is not told about, stated in response headers.

``AccountLimiter`` counts, per vendor, the requests admitted and the tokens answered in a
sliding window (``EmulatorConfig.rpm_window_s``, 60 s by default). Guarantees:

- With ``account_rpm`` set, a request arriving when that many were admitted in the window is
  refused with the seconds until the oldest leaves it; with ``account_tpm`` set, likewise once
  the tokens answered in the window (prompt + completion, from the answers' usage) reach it.
- ``headers(vendor)`` gives the limits and what is left in the vendor's own headers: OpenAI
  ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (resets as durations like ``1s``,
  ``120ms``, ``6m0s``), Anthropic ``anthropic-ratelimit-{requests,tokens}-{limit,remaining,
  reset}`` (resets as RFC 3339 instants). Gemini states nothing (empty mapping).
- With neither limit set it admits everything and states nothing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from octopipe.emulator.config import EmulatorConfig


def format_duration(seconds: float) -> str:
    """OpenAI's reset form: ``120ms`` below a second, else ``[Nh][Nm]N.NNNs`` (``6m0s``)."""
    if seconds < 1.0:
        return f"{max(0, round(seconds * 1000))}ms"
    hours, rest = divmod(seconds, 3600.0)
    minutes, secs = divmod(rest, 60.0)
    text = f"{int(hours)}h" if hours else ""
    text += f"{int(minutes)}m" if hours or minutes else ""
    return text + f"{secs:.3f}".rstrip("0").rstrip(".") + "s"


def format_rfc3339(epoch: float) -> str:
    """Anthropic's reset form: ``2026-12-02T15:00:01Z`` (whole seconds, rounded up)."""
    instant = datetime.fromtimestamp(int(epoch) + (epoch % 1 > 0), tz=UTC)
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Window:
    """Amounts booked at instants, forgotten ``window`` seconds later."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.entries: deque[tuple[float, int]] = deque()
        self.total = 0

    def expire(self, now: float) -> None:
        while self.entries and self.entries[0][0] <= now - self.window:
            self.total -= self.entries.popleft()[1]

    def add(self, now: float, amount: int) -> None:
        self.entries.append((now, amount))
        self.total += amount

    def reset_s(self, now: float) -> float:
        """Seconds until the oldest booking leaves the window (0 when empty)."""
        return max(self.entries[0][0] + self.window - now, 0.0) if self.entries else 0.0


class AccountLimiter:
    """Per-vendor request and token windows against ``account_rpm`` / ``account_tpm``."""

    def __init__(
        self,
        config: EmulatorConfig,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._rpm, self._tpm = config.account_rpm, config.account_tpm
        self._window = config.rpm_window_s
        self._clock, self._wall = clock, wall
        self._requests: dict[str, _Window] = {}
        self._tokens: dict[str, _Window] = {}
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self._rpm is not None or self._tpm is not None

    def admit(self, vendor: str) -> float | None:
        """Book the request and return None, or refuse it: seconds until it could pass."""
        if not self.active:
            return None
        now = self._clock()
        with self._lock:
            requests, tokens = self._windows(vendor, now)
            if self._rpm is not None and requests.total >= self._rpm:
                return max(requests.reset_s(now), 0.001)
            if self._tpm is not None and tokens.total >= self._tpm:
                return max(tokens.reset_s(now), 0.001)
            requests.add(now, 1)
        return None

    def used_tokens(self, vendor: str, tokens: int) -> None:
        """Book the tokens an answer used (prompt + completion)."""
        if self.active and tokens > 0:
            now = self._clock()
            with self._lock:
                self._windows(vendor, now)[1].add(now, tokens)

    def headers(self, vendor: str) -> dict[str, str]:
        """The vendor's rate-limit headers for a response sent now (see the module doc)."""
        if not self.active or vendor not in ("openai", "anthropic"):
            return {}
        now = self._clock()
        with self._lock:
            requests, tokens = self._windows(vendor, now)
            stated = {
                "requests": (self._rpm, requests.total, requests.reset_s(now)),
                "tokens": (self._tpm, tokens.total, tokens.reset_s(now)),
            }
        headers: dict[str, str] = {}
        for kind, (limit, used, reset_s) in stated.items():
            if limit is None:
                continue
            remaining = str(max(limit - used, 0))
            if vendor == "openai":
                headers[f"x-ratelimit-limit-{kind}"] = str(limit)
                headers[f"x-ratelimit-remaining-{kind}"] = remaining
                headers[f"x-ratelimit-reset-{kind}"] = format_duration(reset_s)
            else:
                headers[f"anthropic-ratelimit-{kind}-limit"] = str(limit)
                headers[f"anthropic-ratelimit-{kind}-remaining"] = remaining
                headers[f"anthropic-ratelimit-{kind}-reset"] = format_rfc3339(
                    self._wall() + reset_s
                )
        return headers

    def _windows(self, vendor: str, now: float) -> tuple[_Window, _Window]:
        requests = self._requests.setdefault(vendor, _Window(self._window))
        tokens = self._tokens.setdefault(vendor, _Window(self._window))
        requests.expire(now)
        tokens.expire(now)
        return requests, tokens
