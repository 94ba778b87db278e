"""Rate-limit headers from OpenAI and Anthropic responses, read into StatedLimits."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from octopipe.providers.ratelimit_headers import (
    StatedLimits,
    parse_duration,
    parse_ratelimit_headers,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("6m0s", 360.0), ("1s", 1.0), ("120ms", 0.12), ("1h2m3.5s", 3723.5), ("0s", 0.0)],
)
def test_openai_durations_are_read_as_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "6 m", "abc", "1x", "1s extra", "-1s"])
def test_malformed_durations_raise(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_openai_headers_give_limits_remaining_and_resets() -> None:
    headers = {
        "X-RateLimit-Limit-Requests": "3000",
        "x-ratelimit-limit-tokens": "2000000",
        "x-ratelimit-remaining-requests": "2999",
        "x-ratelimit-remaining-tokens": "1999500",
        "x-ratelimit-reset-requests": "20ms",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert parse_ratelimit_headers(headers, NOW) == StatedLimits(
        requests_limit=3000,
        tokens_limit=2_000_000,
        requests_remaining=2999,
        tokens_remaining=1_999_500,
        requests_reset_s=pytest.approx(0.02),
        tokens_reset_s=360.0,
    )


def test_anthropic_headers_give_limits_and_reset_delays() -> None:
    headers = {
        "anthropic-ratelimit-requests-limit": "4000",
        "anthropic-ratelimit-requests-remaining": "3990",
        "anthropic-ratelimit-requests-reset": "2026-01-01T12:00:01Z",
        "anthropic-ratelimit-tokens-limit": "400000",
        "anthropic-ratelimit-tokens-remaining": "399000",
        "anthropic-ratelimit-tokens-reset": "2026-01-01T12:00:30+00:00",
    }
    assert parse_ratelimit_headers(headers, NOW) == StatedLimits(
        requests_limit=4000,
        tokens_limit=400_000,
        requests_remaining=3990,
        tokens_remaining=399_000,
        requests_reset_s=1.0,
        tokens_reset_s=30.0,
    )


def test_a_reset_in_the_past_is_zero_delay() -> None:
    headers = {"anthropic-ratelimit-requests-reset": "2025-12-31T00:00:00Z"}
    assert parse_ratelimit_headers(headers, NOW).requests_reset_s == 0.0


def test_gemini_style_response_states_nothing() -> None:
    assert parse_ratelimit_headers({"content-type": "application/json"}, NOW).empty


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-ratelimit-limit-requests", "lots"),
        ("x-ratelimit-limit-requests", "-5"),
        ("x-ratelimit-reset-tokens", "soon"),
    ],
)
def test_malformed_openai_header_is_ignored_and_logged(
    name: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {name: value, "x-ratelimit-limit-tokens": "1000"}
    with caplog.at_level(logging.WARNING, logger="octopipe.providers.ratelimit_headers"):
        stated = parse_ratelimit_headers(headers, NOW)
    assert stated == StatedLimits(tokens_limit=1000)
    assert [r.getMessage() for r in caplog.records] == [
        f"ignoring malformed rate-limit header {name}: {value!r}"
    ]


def test_malformed_anthropic_reset_is_ignored_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-reset": "2026-01-01T12:00:01",  # no offset
    }
    with caplog.at_level(logging.WARNING, logger="octopipe.providers.ratelimit_headers"):
        stated = parse_ratelimit_headers(headers, NOW)
    assert stated == StatedLimits(requests_limit=50)
    assert len(caplog.records) == 1
