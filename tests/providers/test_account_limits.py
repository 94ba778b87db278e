"""Emulator account limits: enforced with 429 + retry-after, stated in each vendor's headers,
seen through the real SDKs' raw-response paths."""

from __future__ import annotations

import time

import anthropic
import openai
import pytest

from octopipe.emulator.account_limits import format_duration, format_rfc3339
from octopipe.emulator.config import EmulatorConfig
from octopipe.emulator.runner import EmulatorThread
from octopipe.providers.ratelimit_headers import parse_duration, parse_ratelimit_headers


def _openai(emu: EmulatorThread) -> openai.OpenAI:
    return openai.OpenAI(api_key="k", base_url=emu.base_url_for("openai"), max_retries=0)


def _anthropic(emu: EmulatorThread) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="k", base_url=emu.base_url_for("anthropic"), max_retries=0)


def _ask_openai(client: openai.OpenAI) -> object:
    return client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=16
    )


def test_openai_states_account_limits_and_refuses_past_rpm() -> None:
    with EmulatorThread(EmulatorConfig(account_rpm=2, account_tpm=1_000_000)) as emu:
        client = _openai(emu)
        first = _ask_openai(client)
        stated = parse_ratelimit_headers(first.headers, time.time())  # type: ignore[attr-defined]
        assert stated.requests_limit == 2 and stated.tokens_limit == 1_000_000
        assert stated.requests_remaining == 1
        assert stated.tokens_remaining is not None and stated.tokens_remaining < 1_000_000
        _ask_openai(client)
        with pytest.raises(openai.RateLimitError) as refused:
            _ask_openai(client)
        assert int(refused.value.response.headers["retry-after"]) >= 1
        assert refused.value.response.headers["x-ratelimit-remaining-requests"] == "0"
        assert emu.stats()["rate_limited"] == 1


def test_anthropic_states_account_limits_and_refuses_past_tpm() -> None:
    with EmulatorThread(EmulatorConfig(account_tpm=1)) as emu:
        client = _anthropic(emu)
        raw = client.messages.with_raw_response.create(
            model="claude-3-5-haiku-latest",
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
        )
        assert raw.headers["anthropic-ratelimit-tokens-limit"] == "1"
        assert "anthropic-ratelimit-requests-limit" not in raw.headers
        stated = parse_ratelimit_headers(raw.headers, time.time())
        assert stated.tokens_remaining == 0
        assert stated.tokens_reset_s is not None and 0 < stated.tokens_reset_s <= 61
        with pytest.raises(anthropic.RateLimitError) as refused:
            client.messages.create(
                model="claude-3-5-haiku-latest",
                max_tokens=16,
                messages=[{"role": "user", "content": "hi"}],
            )
        assert int(refused.value.response.headers["retry-after"]) >= 1


def test_no_account_limits_state_nothing() -> None:
    with EmulatorThread(EmulatorConfig()) as emu:
        raw = _ask_openai(_openai(emu))
        assert parse_ratelimit_headers(raw.headers, time.time()).empty  # type: ignore[attr-defined]


@pytest.mark.parametrize("seconds", [0.12, 1.0, 360.0, 3723.5])
def test_durations_round_trip_through_the_parser(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=0.001)


def test_rfc3339_rounds_up_to_whole_seconds() -> None:
    assert format_rfc3339(0.2) == "1970-01-01T00:00:01Z"


def test_account_limits_below_one_are_rejected() -> None:
    with pytest.raises(ValueError, match="account_rpm"):
        EmulatorConfig(account_rpm=0)
