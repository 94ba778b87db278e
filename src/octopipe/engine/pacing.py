"""Client-side pacing of provider calls: requests per minute and tokens per minute.

Providers count requests in sliding windows; a client that sends a burst and then waits gets
429s at the burst and idles after it. ``Pacer`` spaces sends evenly at a target rate a little
under the limit (``HEADROOM``), so a steady stream never trips the window and the achieved
rate stays within a few percent of the limit.

Where the limits come from (``Pacer.learn``): the account's own, as the answers' headers state
them (``StatedLimits``), once the first answer has told them; before that -- and for providers
that state none -- the configured pace (``--rpm``/``--tpm``, ``api.rpm``/``api.tpm``, else the
registry's lowest-tier defaults). Explicit limits (``rpm_cap``/``tpm_cap``) can only lower the
pace: a stated limit above them is paced at them. A stated ``remaining`` smaller than what the
pace would send before its ``reset`` spreads what is left over that time (``0``: nothing is
sent until the reset), so no burst goes past what the account has left.

Tokens are booked at send by an estimate and settled once the answer's usage is known
(``settle``): the gate then holds the tokens the call really used.

On a 429 the target rate is cut multiplicatively (and nothing is sent until the server's
``Retry-After`` has passed); each success then raises it additively back towards the limit
(AIMD). The hold applies with or without limits, and to requests already waiting for a slot
booked before the 429: they book again once it is over. Requests waiting when a learned limit
changes the pace book again too (within ``MAX_NAP_S``), at the new rate. The clock and the
sleep are injectable so the decisions are testable without waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from octopipe.providers.ratelimit_headers import StatedLimits

HEADROOM = 0.98  # aim just under the limit: arrival jitter must not push a window over it
DECREASE = 0.5
RECOVERY_SHARE = 0.02  # each success gives back this share of the limit
MAX_NAP_S = 0.25
"""A request waiting for its slot looks at the pace at least this often: a learned limit
reaches requests already waiting within this time."""


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

    def settle(self, now: float, booked: float, used: float) -> None:
        """A call booked ``booked`` and used ``used``: hold the difference (or give it back;
        never a slot earlier than now)."""
        self.next_at = max(now, self.next_at + (used - booked) / self.rate)

    def back_off(self, now: float, retry_after: float | None) -> None:
        self.rate = max(self.limit_per_s * 0.05, self.rate * DECREASE)
        if retry_after:
            self.next_at = max(self.next_at, now + retry_after)

    def recover(self) -> None:
        ceiling = self.limit_per_s * HEADROOM
        self.rate = min(ceiling, self.rate + self.limit_per_s * RECOVERY_SHARE)

    def retarget(self, limit_per_s: float) -> None:
        """Pace to a new limit, keeping the AIMD share reached."""
        share = self.rate / (self.limit_per_s * HEADROOM)
        self.limit_per_s = limit_per_s
        self.rate = limit_per_s * HEADROOM * share

    def restart(self, now: float) -> None:
        """Forget the slots booked ahead (their requests book again): the next is one unit
        after now at the latest."""
        self.next_at = min(self.next_at, now + 1.0 / self.rate)

    def heed_remaining(self, now: float, remaining: int | None, reset_s: float | None) -> None:
        """Send no faster than ``remaining`` over the ``reset_s`` seconds until the account's
        window resets, when that is slower than the pace; with nothing left, not before it."""
        if remaining is None or reset_s is None or reset_s <= 0:
            return
        if remaining == 0:
            self.next_at = max(self.next_at, now + reset_s)
        elif remaining < self.rate * reset_s:
            self.next_at = max(self.next_at, now + reset_s / remaining)


def _lower(limit: float | None, cap: float | None) -> float | None:
    if limit is None:
        return cap
    return limit if cap is None else min(limit, cap)


@dataclass
class Pacer:
    """RPM and TPM gates for one (provider, model); either may be absent (no limit).

    ``rpm``/``tpm``: the pace before any limit is stated; ``rpm_cap``/``tpm_cap``: explicit
    limits, which a stated limit never raises the pace above. ``learned_rpm``/``learned_tpm``:
    the limits the account stated last (``None`` until it states one)."""

    rpm: float | None = None
    tpm: float | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rpm_cap: float | None = None
    tpm_cap: float | None = None
    requests: RateGate | None = field(init=False, default=None)
    tokens: RateGate | None = field(init=False, default=None)
    learned_rpm: int | None = field(init=False, default=None)
    learned_tpm: int | None = field(init=False, default=None)
    rate_limited: int = field(init=False, default=0)
    repaced: int = field(init=False, default=0)
    """How many times a learned limit changed the pace (requests waiting then book again)."""
    hold_until: float = field(init=False, default=0.0)
    """Monotonic time before which nothing is sent (the last 429's ``Retry-After``)."""

    def __post_init__(self) -> None:
        self.rpm = _lower(self.rpm, self.rpm_cap)
        self.tpm = _lower(self.tpm, self.tpm_cap)
        if self.rpm:
            self.requests = RateGate(self.rpm / 60.0)
        if self.tpm:
            self.tokens = RateGate(self.tpm / 60.0)

    async def wait_turn(self, estimated_tokens: int) -> None:
        while True:
            limited, repaced = self.rate_limited, self.repaced
            start = self._book(estimated_tokens)
            while (now := self.clock()) < start and self.repaced == repaced:
                await self.sleep(min(start - now, MAX_NAP_S))
            if self.repaced != repaced and now < start:
                continue  # a learned limit changed the pace meanwhile: book at the new one
            # A 429 came while this request waited: its slot was booked at the old rate and
            # may fall inside the server's Retry-After. Book again after the hold.
            if self.rate_limited == limited or self.clock() >= self.hold_until:
                return

    def _book(self, estimated_tokens: int) -> float:
        now = self.clock()
        start = max(now, self.hold_until)
        if self.requests is not None:
            start = max(start, self.requests.reserve(now))
        if self.tokens is not None:
            start = max(start, self.tokens.reserve(now, float(estimated_tokens)))
        return start

    def learn(self, stated: StatedLimits | None) -> bool:
        """Pace to the limits ``stated`` (an answer's or a refusal's headers) and heed what
        remains of them. True when the pace changed (a limit not seen before)."""
        if stated is None:
            return False
        now = self.clock()
        changed = False
        if stated.requests_limit and stated.requests_limit != self.learned_rpm:
            self.learned_rpm = stated.requests_limit
            self.requests = self._retarget(self.requests, now, stated.requests_limit, self.rpm_cap)
            changed = True
        if stated.tokens_limit and stated.tokens_limit != self.learned_tpm:
            self.learned_tpm = stated.tokens_limit
            self.tokens = self._retarget(self.tokens, now, stated.tokens_limit, self.tpm_cap)
            changed = True
        if changed:  # every waiting request books again, on every gate
            self.repaced += 1
            for gate in (self.requests, self.tokens):
                if gate is not None:
                    gate.restart(now)
        if self.requests is not None:
            self.requests.heed_remaining(now, stated.requests_remaining, stated.requests_reset_s)
        if self.tokens is not None:
            self.tokens.heed_remaining(now, stated.tokens_remaining, stated.tokens_reset_s)
        return changed

    @staticmethod
    def _retarget(
        gate: RateGate | None, now: float, per_minute: int, cap: float | None
    ) -> RateGate:
        limit_per_s = (_lower(float(per_minute), cap) or float(per_minute)) / 60.0
        if gate is None:
            return RateGate(limit_per_s, next_at=now)
        gate.retarget(limit_per_s)
        return gate

    @property
    def pace_rpm(self) -> float | None:
        """Requests per minute the pacer aims at now (``None``: no request limit)."""
        return self.requests.rate * 60.0 if self.requests is not None else None

    @property
    def pace_tpm(self) -> float | None:
        """Tokens per minute the pacer aims at now (``None``: no token limit)."""
        return self.tokens.rate * 60.0 if self.tokens is not None else None

    def settle(self, booked_tokens: int, used_tokens: int) -> None:
        """A call booked ``booked_tokens`` at send and used ``used_tokens`` (0 when refused)."""
        if self.tokens is not None:
            self.tokens.settle(self.clock(), float(booked_tokens), float(used_tokens))

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
