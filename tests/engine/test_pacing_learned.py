"""The pacer learns the account's limits from stated headers, on a simulated clock: stated
limits replace the defaults, explicit limits only lower the pace, ``remaining``/``reset`` are
heeded, and token bookings are settled at the answer's real usage."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from octopipe.engine.pacing import HEADROOM, MAX_NAP_S, Pacer
from octopipe.providers.ratelimit_headers import StatedLimits


class FakeTime:
    """A clock that only moves when someone sleeps; sleepers wake in time order."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake = self.now + seconds
        while self.now < wake - 1e-9:
            await asyncio.sleep(0)
            self.now = min(wake, self.now + 0.001)
        self.now = max(self.now, wake)


def pacer(time: FakeTime, **limits: float) -> Pacer:
    return Pacer(**limits, clock=time.clock, sleep=time.sleep)  # type: ignore[arg-type]


async def send_times(time: FakeTime, p: Pacer, count: int, tokens: int = 10) -> list[float]:
    starts = []
    for _ in range(count):
        await p.wait_turn(tokens)
        starts.append(time.now)
    return starts


def gaps(starts: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(starts)]


async def test_without_stated_limits_the_configured_pace_stays() -> None:
    time = FakeTime()
    p = pacer(time, rpm=600)
    assert p.learn(None) is False
    assert p.learn(StatedLimits()) is False
    assert p.pace_rpm == pytest.approx(600 * HEADROOM)
    assert all(abs(g - 0.1 / HEADROOM) < 1e-3 for g in gaps(await send_times(time, p, 10)))


async def test_a_stated_limit_above_the_default_raises_the_pace() -> None:
    time = FakeTime()
    p = pacer(time, rpm=500, tpm=200_000)
    assert p.learn(StatedLimits(requests_limit=3000, tokens_limit=2_000_000)) is True
    assert p.learned_rpm == 3000 and p.learned_tpm == 2_000_000
    assert p.pace_rpm == pytest.approx(3000 * HEADROOM)
    assert p.pace_tpm == pytest.approx(2_000_000 * HEADROOM)
    spacing = gaps(await send_times(time, p, 10))
    assert all(abs(g - 0.02 / HEADROOM) < 1e-3 for g in spacing)


async def test_a_stated_limit_below_the_default_lowers_the_pace() -> None:
    p = pacer(FakeTime(), rpm=500)
    p.learn(StatedLimits(requests_limit=60))
    assert p.pace_rpm == pytest.approx(60 * HEADROOM)


@pytest.mark.parametrize(("stated", "paced"), [(3000, 1200), (600, 600)])
async def test_explicit_limits_only_lower_the_pace(stated: int, paced: int) -> None:
    p = pacer(FakeTime(), rpm=1200, rpm_cap=1200, tpm=50_000, tpm_cap=50_000)
    p.learn(StatedLimits(requests_limit=stated, tokens_limit=stated * 100))
    assert p.pace_rpm == pytest.approx(paced * HEADROOM)
    assert p.pace_tpm == pytest.approx(min(stated * 100, 50_000) * HEADROOM)


async def test_a_limit_is_learned_where_nothing_was_configured() -> None:
    time = FakeTime()
    p = pacer(time)
    assert p.requests is None and p.tokens is None
    p.learn(StatedLimits(requests_limit=600))
    assert p.pace_rpm == pytest.approx(600 * HEADROOM) and p.tokens is None
    spacing = gaps(await send_times(time, p, 5))
    assert all(abs(g - 0.1 / HEADROOM) < 1e-3 for g in spacing)


async def test_one_stated_dimension_leaves_the_other_at_its_default() -> None:
    p = pacer(FakeTime(), rpm=50, tpm=30_000)
    p.learn(StatedLimits(tokens_limit=400_000))  # Anthropic states only what it limits
    assert p.pace_rpm == pytest.approx(50 * HEADROOM)
    assert p.pace_tpm == pytest.approx(400_000 * HEADROOM)


async def test_the_same_limits_stated_again_change_nothing() -> None:
    p = pacer(FakeTime(), rpm=500)
    assert p.learn(StatedLimits(requests_limit=3000, requests_remaining=2999)) is True
    assert p.learn(StatedLimits(requests_limit=3000, requests_remaining=2998)) is False
    assert p.repaced == 1


async def test_nothing_remaining_holds_sends_until_the_reset() -> None:
    time = FakeTime()
    p = pacer(time, rpm=600)
    t0 = time.now
    p.learn(StatedLimits(requests_limit=600, requests_remaining=0, requests_reset_s=2.0))
    await p.wait_turn(10)
    assert time.now >= t0 + 2.0 - 1e-6


async def test_little_remaining_is_spread_until_the_reset() -> None:
    """5 requests left, 10 s to the reset: at 600 rpm they would go in half a second."""
    time = FakeTime()
    p = pacer(time, rpm=600)
    t0 = time.now
    p.learn(StatedLimits(requests_limit=600, requests_remaining=5, requests_reset_s=10.0))
    await p.wait_turn(10)
    assert time.now >= t0 + 2.0 - 1e-6


async def test_ample_remaining_does_not_slow_the_pace() -> None:
    time = FakeTime()
    p = pacer(time, rpm=600)
    p.learn(StatedLimits(requests_limit=600, requests_remaining=500, requests_reset_s=5.0))
    t0 = time.now
    await p.wait_turn(10)
    assert time.now == t0


async def test_few_tokens_remaining_hold_the_token_gate() -> None:
    time = FakeTime()
    p = pacer(time, tpm=60_000)
    t0 = time.now
    p.learn(StatedLimits(tokens_limit=60_000, tokens_remaining=0, tokens_reset_s=3.0))
    await p.wait_turn(100)
    assert time.now >= t0 + 3.0 - 1e-6


async def test_an_overestimate_is_given_back_once_the_usage_is_known() -> None:
    """1,000 tokens booked a call at 60,000 tpm (1 s of the gate); it used 100: the next call
    goes 0.1 s later, not 1 s."""
    time = FakeTime()
    p = pacer(time, tpm=60_000 / HEADROOM)
    await p.wait_turn(1000)
    t0 = time.now
    p.settle(1000, 100)
    await p.wait_turn(1000)
    assert time.now - t0 == pytest.approx(0.1, abs=1e-3)


async def test_an_underestimate_is_held_once_the_usage_is_known() -> None:
    time = FakeTime()
    p = pacer(time, tpm=60_000 / HEADROOM)
    await p.wait_turn(100)
    t0 = time.now
    p.settle(100, 2000)
    await p.wait_turn(100)
    assert time.now - t0 == pytest.approx(2.0, abs=1e-3)


async def test_a_refund_never_books_a_slot_in_the_past() -> None:
    time = FakeTime()
    p = pacer(time, tpm=60_000)
    await p.wait_turn(10)
    p.settle(10, 0)
    p.settle(5000, 0)
    assert p.tokens is not None and p.tokens.next_at >= time.now


async def test_requests_waiting_at_the_old_pace_book_again_at_the_learned_one() -> None:
    """Fifty requests booked at 60 rpm (1 s apart; 0.5 s of the token gate in all); 3,000 rpm
    is learned (tokens not stated): they all go within a nap and 50 slots of the new pace,
    evenly spaced -- neither gate keeps the slots booked before."""
    time = FakeTime()
    p = pacer(time, rpm=60 / HEADROOM, tpm=60_000 / HEADROOM)
    sent: list[float] = []

    async def one() -> None:
        await p.wait_turn(10)
        sent.append(time.now)

    tasks = [asyncio.create_task(one()) for _ in range(50)]
    await asyncio.sleep(0)
    t0 = time.now
    p.learn(StatedLimits(requests_limit=3000))
    await asyncio.gather(*tasks)
    assert max(sent) <= t0 + MAX_NAP_S + 50 * 0.02 / HEADROOM + 0.02, max(sent) - t0
    later = sorted(sent)[1:]
    assert all(g >= 0.02 / HEADROOM - 2e-3 for g in gaps(later)), sent


async def test_a_backed_off_pace_keeps_its_share_when_a_limit_is_learned() -> None:
    p = pacer(FakeTime(), rpm=600)
    p.on_rate_limited(None)
    p.learn(StatedLimits(requests_limit=3000))
    assert p.pace_rpm == pytest.approx(3000 * HEADROOM * 0.5)
    for _ in range(100):
        p.on_success()
    assert p.pace_rpm == pytest.approx(3000 * HEADROOM)
