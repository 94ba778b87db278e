"""Provider names and the answer hook, as ``providers_setup`` accepts them."""

from __future__ import annotations

import pytest

from octopipe.emulator import default_answer
from octopipe.engine import providers_setup
from octopipe.engine.providers_setup import check_answer_hook, check_provider, split_fake
from octopipe.engine.realtime import RealtimeOptions
from octopipe.errors import UsageError

VALID = (
    "openai, anthropic, gemini, openai-compatible, fake, fake:openai, fake:anthropic, fake:gemini"
)


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("fake", ("fake", "openai")),
        ("fake:openai", ("fake", "openai")),
        ("fake:gemini", ("fake", "gemini")),
        ("anthropic", ("anthropic", None)),
        (None, (None, None)),
    ],
)
def test_known_provider_names_split_into_provider_and_emulated_vendor(
    name: str | None, split: tuple[str | None, str | None]
) -> None:
    check_provider(name)
    assert split_fake(name) == split


@pytest.mark.parametrize("name", ["fakeXYZ", "fake:", "fake:mistral", "Fake", "open-ai", ""])
def test_unknown_provider_names_are_refused_listing_the_valid_ones(name: str) -> None:
    with pytest.raises(UsageError) as raised:
        check_provider(name)
    assert raised.value.message == f"unknown provider {name!r}; use one of {VALID}"


def test_fake_lookalikes_are_not_taken_as_the_emulator() -> None:
    assert split_fake("fakeXYZ") == ("fakeXYZ", None)
    with pytest.raises(UsageError, match="unknown provider 'fake:mistral'"):
        split_fake("fake:mistral")


def test_an_executor_for_an_unknown_provider_is_refused() -> None:
    with (
        pytest.raises(UsageError, match="unknown provider 'fakeXYZ'"),
        providers_setup.llm_executor("realtime", RealtimeOptions(provider="fakeXYZ")),
    ):
        pass


@pytest.mark.parametrize("provider", ["openai", "openai-compatible", None])
def test_an_answer_hook_needs_the_fake_provider(provider: str | None) -> None:
    with pytest.raises(UsageError, match="--answers only applies to --provider fake"):
        check_answer_hook(provider)
    with (
        pytest.raises(UsageError, match="--answers only applies to --provider fake"),
        providers_setup.llm_executor(
            "realtime", RealtimeOptions(provider=provider), answers=default_answer
        ),
    ):
        pass


def test_an_answer_hook_needs_the_emulator_in_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(providers_setup.EMULATOR_URL_ENV, "http://127.0.0.1:9")
    with pytest.raises(UsageError, match="octopipe emulator --answers FILE"):
        check_answer_hook("fake:anthropic")
