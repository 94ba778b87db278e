"""The pacer's decisions on a simulated clock: even spacing, AIMD on 429, Retry-After holds."""

from __future__ import annotations

import asyncio
import itertools

from octopipe.engine.pacing import HEADROOM, Pacer


class FakeTime:
    """A clock that only moves when someone sleeps; sleepers wake in time order."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sends: list[tuple[str, float]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake = self.now + seconds
        while self.now < wake - 1e-9:
            # let every other sleeper that is due earlier run first
            await asyncio.sleep(0)
            self.now = min(wake, self.now + 0.001)
        self.now = max(self.now, wake)


def pacer(time: FakeTime, **limits: float) -> Pacer:
    return Pacer(**limits, clock=time.clock, sleep=time.sleep)


async def test_sends_are_evenly_spaced_just_under_the_limit() -> None:
    time = FakeTime()
    p = pacer(time, rpm=600)
    starts = []
    for _ in range(20):
        await p.wait_turn(10)
        starts.append(time.now)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(abs(g - 0.1 / HEADROOM) < 1e-3 for g in gaps)


async def test_a_429_cuts_the_rate_and_successes_bring_it_back() -> None:
    time = FakeTime()
    p = pacer(time, rpm=600)
    gate = p.requests
    assert gate is not None
    p.on_rate_limited(None)
    assert gate.rate == 10 * HEADROOM * 0.5
    for _ in range(100):
        p.on_success()
    assert gate.rate == 10 * HEADROOM


async def test_retry_after_holds_every_request_even_without_limits() -> None:
    """No rpm/tpm configured (the emulator, an OpenAI-compatible server): a 429's Retry-After
    still stops every other request, not only the one that was refused."""
    time = FakeTime()
    p = pacer(time)
    p.on_rate_limited(2.0)
    t0 = time.now
    await p.wait_turn(10)
    assert time.now >= t0 + 2.0
    assert p.pause_until() == t0 + 2.0


async def test_requests_waiting_for_a_slot_book_again_after_a_429() -> None:
    """Slots booked before a 429 (at the old rate, some inside the Retry-After) are not used:
    those requests wait for the hold to pass and go out at the reduced rate."""
    time = FakeTime()
    p = pacer(time, rpm=600)
    sent: list[float] = []

    async def one() -> None:
        await p.wait_turn(10)
        sent.append(time.now)

    tasks = [asyncio.create_task(one()) for _ in range(6)]
    await asyncio.sleep(0)  # all six have booked slots 0.1 s apart
    while len(sent) < 2:
        await asyncio.sleep(0)
        time.now += 0.001
    refused_at = time.now
    p.on_rate_limited(1.0)
    await asyncio.gather(*tasks)
    later = sorted(sent)[2:]
    assert all(t >= refused_at + 1.0 - 1e-6 for t in later), (refused_at, sent)
    gaps = [b - a for a, b in itertools.pairwise(later)]
    assert all(g >= 0.2 / HEADROOM - 1e-3 for g in gaps), gaps  # half the rate


def test_default_concurrency_is_sized_from_the_rpm_limit() -> None:
    from octopipe.engine.realtime import default_concurrency

    assert [
        default_concurrency(r) for r in ([], [120.0], [1200.0], [500.0, 2400.0], [100_000.0])
    ] == [32, 32, 120, 240, 256]
