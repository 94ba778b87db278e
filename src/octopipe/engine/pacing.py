"""Client-side pacing of provider calls: requests per minute and tokens per minute.

Providers count requests in sliding windows; a client that sends a burst and then waits gets
429s at the burst and idles after it. ``Pacer`` spaces sends evenly at a target rate a little
under the configured limit (``HEADROOM``), so a steady stream never trips the window and the
achieved rate stays within a few percent of the limit.

On a 429 the target rate is cut multiplicatively (and nothing is sent until the server's
``Retry-After`` has passed); each success then raises it additively back towards the limit
(AIMD). The hold applies with or without configured limits, and to requests already waiting
for a slot booked before the 429: they book again once it is over. The clock and the sleep are
injectable so the decisions are testable without waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

HEADROOM = 0.98  # aim just under the limit: arrival jitter must not push a window over it
DECREASE = 0.5
RECOVERY_SHARE = 0.02  # each success gives back this share of the limit


@dataclass
class RateGate:
    """Evenly spaced sends at ``rate`` units per second (requests, or tokens)."""

    limit_per_s: float
    rate: float = 0.0
    next_at: float = 0.0

    def __post_init__(self) -> None:
        self.rate = self.limit_per_s * HEADROOM

    def reserve(self, now: float, amount: float = 1.0) -> float:
        """Book ``amount`` and return when the caller may send (monotonic seconds)."""
        start = max(now, self.next_at)
        self.next_at = start + amount / self.rate
        return start

    def back_off(self, now: float, retry_after: float | None) -> None:
        self.rate = max(self.limit_per_s * 0.05, self.rate * DECREASE)
        if retry_after:
            self.next_at = max(self.next_at, now + retry_after)

    def recover(self) -> None:
        ceiling = self.limit_per_s * HEADROOM
        self.rate = min(ceiling, self.rate + self.limit_per_s * RECOVERY_SHARE)


@dataclass
class Pacer:
    """RPM and TPM gates for one (provider, model); either may be absent (no limit)."""

    rpm: float | None = None
    tpm: float | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    requests: RateGate | None = field(init=False, default=None)
    tokens: RateGate | None = field(init=False, default=None)
    rate_limited: int = field(init=False, default=0)
    hold_until: float = field(init=False, default=0.0)
    """Monotonic time before which nothing is sent (the last 429's ``Retry-After``)."""

    def __post_init__(self) -> None:
        if self.rpm:
            self.requests = RateGate(self.rpm / 60.0)
        if self.tpm:
            self.tokens = RateGate(self.tpm / 60.0)

    async def wait_turn(self, estimated_tokens: int) -> None:
        while True:
            seen = self.rate_limited
            now = self.clock()
            start = max(now, self.hold_until)
            if self.requests is not None:
                start = max(start, self.requests.reserve(now))
            if self.tokens is not None:
                start = max(start, self.tokens.reserve(now, float(estimated_tokens)))
            if start > now:
                await self.sleep(start - now)
            # A 429 came while this request waited: its slot was booked at the old rate and
            # may fall inside the server's Retry-After. Book again after the hold.
            if self.rate_limited == seen or self.clock() >= self.hold_until:
                return

    def on_rate_limited(self, retry_after: float | None) -> None:
        self.rate_limited += 1
        now = self.clock()
        if retry_after:
            self.hold_until = max(self.hold_until, now + retry_after)
        for gate in (self.requests, self.tokens):
            if gate is not None:
                gate.back_off(now, retry_after)

    def on_success(self) -> None:
        for gate in (self.requests, self.tokens):
            if gate is not None:
                gate.recover()

    def pause_until(self) -> float:
        """Monotonic time before which no request should be sent (0 when none)."""
        gates = [g for g in (self.requests, self.tokens) if g is not None]
        return max([self.hold_until, *(g.next_at for g in gates)])
