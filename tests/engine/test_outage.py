"""``ProviderHealth`` decisions as tables: what a failed call costs its unit, when the circuit
opens, when the run must pause; and ``ErrorDigest``, which keeps an error storm to a few
lines. Pure: the clock is a number passed in."""

from __future__ import annotations

import pytest

from octopipe.engine.outage import (
    OPEN_AFTER,
    TRIP_CALLS,
    ErrorDigest,
    Kind,
    ProviderHealth,
    Verdict,
    kind_of,
)
from octopipe.errors import (
    AdapterError,
    AuthError,
    BadRequest,
    MalformedResponse,
    ProviderTimeout,
    ProviderUnreachable,
    QuotaExhausted,
    RateLimited,
    TransientProviderError,
)

P = "openai"
REFUSED = ProviderUnreachable("connection refused", provider=P)
HTTP_500 = TransientProviderError("server_error: boom [request req_1]", provider=P, status=500)
WRONG_MODEL = BadRequest("model_not_found: no model 'gpt-5x'", provider=P, status=404)
MALFORMED = MalformedResponse("malformed answer: a choice without message", provider=P)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (REFUSED, Kind.TRANSIENT),
        (HTTP_500, Kind.TRANSIENT),
        (ProviderTimeout("no answer within 1 s", provider=P), Kind.TRANSIENT),
        (RateLimited("slow down", provider=P), Kind.TRANSIENT),
        (WRONG_MODEL, Kind.REFUSED),
        (MALFORMED, Kind.CHARGED),
        (AdapterError("adapter error KeyError: 'x'", provider=P), Kind.CHARGED),
        (AuthError("invalid key", provider=P, status=401), Kind.FATAL),
        (QuotaExhausted("insufficient_quota", provider=P, status=429), Kind.FATAL),
    ],
)
def test_each_provider_error_has_a_kind(error, kind) -> None:
    assert kind_of(error) is kind


def test_a_transient_failure_is_not_charged_until_it_recurs_while_others_succeed() -> None:
    health = ProviderHealth(grace_s=60)
    assert health.on_failure(1, HTTP_500, now=0) is Verdict.PARK  # first time: parked
    assert health.on_failure(1, HTTP_500, now=1) is Verdict.PARK  # again, nobody answered
    health.on_success(2)  # the provider serves unit 2...
    assert health.on_failure(1, HTTP_500, now=2) is Verdict.CHARGE  # ...so unit 1's own fault
    assert health.on_failure(1, HTTP_500, now=3) is Verdict.PARK  # a fresh strike after that


def test_a_parked_unit_goes_again_after_a_success_or_as_a_single_probe() -> None:
    health = ProviderHealth(grace_s=60, probe_start_s=1.0)
    health.on_failure(1, REFUSED, now=0)
    assert not health.may_send_parked(1, now=0.5, in_flight=0)  # probe not due yet
    assert health.may_send_parked(1, now=1.0, in_flight=0)  # due, nothing in flight
    assert not health.may_send_parked(1, now=1.0, in_flight=1)  # one probe at a time
    health.on_success(2)
    assert health.may_send_parked(1, now=1.0, in_flight=5)  # the provider answers again


def test_probes_back_off_up_to_a_ceiling() -> None:
    health = ProviderHealth(grace_s=600, probe_start_s=1.0)
    for uid in range(32):  # a wave of calls failing together: one back-off step, not 32
        health.on_failure(uid, REFUSED, now=0.001 * uid)
    assert (health.probe_interval_s, health.next_probe_at) == (1.0, 1.0)
    intervals = []
    for _ in range(6):  # each probe fails as soon as it is sent
        health.on_failure(0, REFUSED, now=health.next_probe_at)
        intervals.append(health.probe_interval_s)
    assert intervals == [2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_the_circuit_opens_after_consecutive_failures_and_closes_on_a_success() -> None:
    health = ProviderHealth(grace_s=60)
    for uid in range(1, OPEN_AFTER):
        health.on_failure(uid, REFUSED, now=0)
        assert not health.is_open
    health.on_failure(OPEN_AFTER, HTTP_500, now=0)  # any transient kind adds to one outage
    assert health.is_open
    health.on_success(99)
    assert not health.is_open and health.streak == 0


@pytest.mark.parametrize(
    ("failures_over_s", "reason"),
    [
        (0.5, None),  # a blip: the circuit is open, the outage not long enough to pause
        (
            2.0,
            "provider unreachable: openai: connection refused at http://127.0.0.1:9/v1 "
            "(4 calls failed in a row over 2 s)",
        ),
    ],
)
def test_an_outage_longer_than_the_grace_pauses_the_run(failures_over_s, reason) -> None:
    health = ProviderHealth(grace_s=2.0, endpoint="http://127.0.0.1:9/v1")
    for i in range(4):
        health.on_failure(i, REFUSED, now=i * failures_over_s / 3)
    assert health.is_open
    assert health.pause_reason(failures_over_s, idle=False) == reason


def test_a_refusal_is_held_then_charged_or_turned_into_a_run_level_pause() -> None:
    health = ProviderHealth()
    for uid in range(1, TRIP_CALLS):
        assert health.on_failure(uid, WRONG_MODEL, now=0) is Verdict.HOLD
        assert health.pause_reason(0, idle=False) is None
    health.on_failure(TRIP_CALLS, WRONG_MODEL, now=0)
    assert health.pause_reason(0, idle=False) == (
        "every call is refused: openai: model_not_found: no model 'gpt-5x' (HTTP 404) "
        f"({TRIP_CALLS} units in a row)"
    )


@pytest.mark.parametrize(
    ("refused_units", "successes_before", "idle", "pauses"),
    [
        (2, 0, True, True),  # nothing else to send, never an answer: the run's problem
        (1, 0, True, False),  # a single refusal: that unit's problem
        (2, 1, True, False),  # the provider served others before: the units' problem
        (2, 0, False, False),  # other calls still to come: wait for them
    ],
)
def test_refusals_when_nothing_else_is_left(refused_units, successes_before, idle, pauses) -> None:
    health = ProviderHealth()
    for uid in range(successes_before):
        health.on_success(100 + uid)
    for uid in range(refused_units):
        health.on_failure(uid, WRONG_MODEL, now=0)
    assert (health.pause_reason(0, idle=idle) is not None) is pauses


def test_different_refusals_do_not_make_a_streak() -> None:
    health = ProviderHealth()
    for uid in range(TRIP_CALLS * 2):
        message = f"context too long: {1000 + uid} tokens"
        health.on_failure(uid, BadRequest(message, provider=P, status=400), now=0)
    assert health.pause_reason(0, idle=False) is None


def test_the_same_charged_error_on_every_call_pauses_the_run() -> None:
    health = ProviderHealth()
    verdicts = [health.on_failure(uid, MALFORMED, now=0) for uid in range(TRIP_CALLS)]
    assert verdicts == [Verdict.CHARGE] * TRIP_CALLS  # paid answers: each unit's attempt
    assert health.pause_reason(0, idle=False) == (
        f"every call fails: openai: malformed answer: a choice without message "
        f"({TRIP_CALLS} units in a row)"
    )


def test_auth_errors_release_the_unit() -> None:
    health = ProviderHealth()
    assert health.on_failure(1, AuthError("bad key", provider=P), now=0) is Verdict.RELEASE


def test_the_digest_writes_the_first_error_of_a_kind_then_counts_the_rest() -> None:
    lines: list[tuple[str, str]] = []
    digest = ErrorDigest(lambda tag, message: lines.append((tag, message)), every_s=10)
    digest.note("report: openai: connection refused", "u1", "not charged (0/3 attempts used)", 0)
    for i in range(2, 40):
        digest.note("report: openai: connection refused", f"u{i}", "not charged (0/3 ...)", 1)
    digest.note("report: openai: HTTP 400", "u7", "attempt 1/3 charged, now exhausted", 2)
    digest.flush(5)  # nothing due yet
    assert lines == [
        (
            "PROVIDER",
            "report: openai: connection refused: unit u1: not charged (0/3 attempts used)",
        ),
        ("PROVIDER", "report: openai: HTTP 400: unit u7: attempt 1/3 charged, now exhausted"),
    ]
    digest.flush(10)
    assert lines[2:] == [
        ("PROVIDER", "report: openai: connection refused: 38 more call(s) since (38 not charged)")
    ]
    digest.flush(30)
    assert len(lines) == 3  # said once
