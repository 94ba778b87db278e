"""A long flex "resource unavailable" streak is the flex tier being busy, not an outage: it
never opens the circuit, never pauses the run and never charges a unit's attempt; and it
neither hides nor resets a real outage's streak."""

from __future__ import annotations

from octopipe.engine.outage import OPEN_AFTER, Kind, ProviderHealth, Verdict, kind_of
from octopipe.errors import FlexUnavailable, ProviderUnreachable

P = "openai"
BUSY = FlexUnavailable("resource_unavailable: flex has no capacity", provider=P)
DOWN = ProviderUnreachable("connection refused", provider=P)


def test_flex_unavailable_is_its_own_kind() -> None:
    assert kind_of(BUSY) is Kind.BUSY


def test_an_hour_of_flex_unavailable_for_every_unit_neither_opens_nor_pauses() -> None:
    health = ProviderHealth(grace_s=60)
    verdicts = {health.on_failure(uid % 50, BUSY, now=float(uid)) for uid in range(3600)}
    assert verdicts == {Verdict.PARK}  # never charged, however often the same unit fails
    assert not health.is_open
    assert health.streak == 0
    assert health.pause_reason(3600.0, idle=True) is None
    assert health.pause_reason(3600.0, idle=False) is None


def test_a_busy_unit_is_parked_and_sent_again_after_a_success_or_as_a_probe() -> None:
    health = ProviderHealth(grace_s=60, probe_start_s=1.0)
    assert health.on_failure(1, BUSY, now=0) is Verdict.PARK
    assert not health.may_send_parked(1, now=0.5, in_flight=0)
    assert health.may_send_parked(1, now=1.0, in_flight=0)
    health.on_success(2)
    assert health.may_send_parked(1, now=1.0, in_flight=3)
    health.on_success(1)
    assert health.on_failure(1, BUSY, now=2) is Verdict.PARK  # still never charged


def test_busy_answers_between_outage_failures_do_not_hide_the_outage() -> None:
    health = ProviderHealth(grace_s=60)
    for n in range(OPEN_AFTER):
        health.on_failure(n, DOWN, now=float(n))
        health.on_failure(100 + n, BUSY, now=float(n))
    assert health.is_open  # the connection failures still count in a row
    assert health.pause_reason(61.0, idle=False) is not None
    assert "provider unreachable" in (health.pause_reason(61.0, idle=False) or "")
