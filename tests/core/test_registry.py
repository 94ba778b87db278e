"""The model registry: resolution order, look-ups, limits, and the packaged file itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from octopipe.core.registry import Registry, Resolved, load_registry, parse_registry
from octopipe.errors import UsageError

# A small registry of our own, so the precedence table does not move when the packaged defaults
# or prices change.
SMALL = """
version: 1
default_provider: gemini
providers:
  openai:
    api_key_env: OPENAI_API_KEY
    default_model: o-default
    batch_discount: 0.5
    limits: {rpm: 100, tpm: 1000, batch_max_requests: 50000, batch_max_bytes: 200000000}
    models:
      o-default:
        aliases: [o-default-2025]
        limits: {rpm: 500}
        checked: 2026-01-01
        source: test
      o-other:
        checked: 2026-01-01
        source: test
  anthropic:
    api_key_env: ANTHROPIC_API_KEY
    default_model: a-default
    batch_discount: 0.5
    models:
      a-default:
        aliases: [a-short]
        batch_discount: 0.4
        checked: 2026-01-01
        source: test
  gemini:
    api_key_env: [GOOGLE_API_KEY, GEMINI_API_KEY]
    default_model: g-default
    models:
      g-default:
        checked: 2026-01-01
        source: test
  openai-compatible:
    default_model: null
  fake:
    default_model: o-default
    mirrors: [openai, anthropic, gemini]
    limits: {batch_max_requests: 10}
"""


@pytest.fixture(scope="module")
def small() -> Registry:
    return parse_registry(SMALL)


# --- resolution: CLI flag > step > api section > registry default ------------------------------

# (cli provider, cli model, step provider, step model, api provider, api model) -> expected
RESOLUTION = [
    pytest.param(
        (None, None, None, None, None, None),
        ("gemini", "g-default"),
        id="registry default provider and its default model",
    ),
    pytest.param(
        (None, None, None, None, "openai", None),
        ("openai", "o-default"),
        id="api provider, its default model",
    ),
    pytest.param(
        (None, None, None, None, "openai", "o-other"),
        ("openai", "o-other"),
        id="api provider and model",
    ),
    pytest.param(
        (None, None, "anthropic", None, "openai", "o-other"),
        ("anthropic", "a-default"),
        id="step provider beats api; api model is not carried to it",
    ),
    pytest.param(
        (None, None, None, "o-other", "openai", "o-default"),
        ("openai", "o-other"),
        id="step model beats api model and keeps the api provider",
    ),
    pytest.param(
        (None, None, "anthropic", "a-short", "openai", "o-other"),
        ("anthropic", "a-short"),
        id="step provider and model beat api",
    ),
    pytest.param(
        ("openai", None, "anthropic", "a-short", None, None),
        ("openai", "o-default"),
        id="cli provider beats step; step model is not carried to it",
    ),
    pytest.param(
        (None, "o-other", "openai", "o-default", "anthropic", None),
        ("openai", "o-other"),
        id="cli model beats step model and keeps the step provider",
    ),
    pytest.param(
        ("anthropic", "a-default", "openai", "o-other", "gemini", "g-default"),
        ("anthropic", "a-default"),
        id="cli provider and model beat everything",
    ),
    pytest.param(
        (None, "o-other", None, None, None, None),
        ("openai", "o-other"),
        id="model alone, listed by one vendor only: that vendor",
    ),
    pytest.param(
        (None, None, None, None, None, "mystery-1"),
        ("gemini", "mystery-1"),
        id="unknown model alone stays with the default provider",
    ),
    pytest.param(
        ("fake", None, "anthropic", "a-short", None, None),
        ("fake", "a-short"),
        id="the emulator keeps the pipeline's model from any level",
    ),
    pytest.param(
        ("fake", None, None, None, None, None),
        ("fake", "o-default"),
        id="the emulator's default model",
    ),
    pytest.param(
        ("", "", None, None, "openai", ""),
        ("openai", "o-default"),
        id="empty strings count as not given",
    ),
]


@pytest.mark.parametrize(("given", "expected"), RESOLUTION)
def test_resolution_order(
    small: Registry, given: tuple[str | None, ...], expected: tuple[str, str]
) -> None:
    assert small.resolve(*given) == Resolved(*expected)


def test_resolution_by_keyword(small: Registry) -> None:
    resolved = small.resolve(step_provider="anthropic", api_model="o-other")
    assert (resolved.provider, resolved.model) == ("anthropic", "a-default")


def test_provider_without_default_model_needs_a_model(small: Registry) -> None:
    with pytest.raises(UsageError, match="no default model"):
        small.resolve(api_provider="openai-compatible")
    assert small.resolve(None, None, None, "llama3", "openai-compatible", None) == (
        "openai-compatible",
        "llama3",
    )


def test_unknown_provider_is_a_usage_error_naming_the_known_ones(small: Registry) -> None:
    with pytest.raises(UsageError, match=r"unknown provider 'opneai'.*openai, anthropic"):
        small.resolve(step_provider="opneai")


# --- look-ups ---------------------------------------------------------------------------------


def test_model_by_id_or_alias(small: Registry) -> None:
    by_id = small.model("openai", "o-default")
    assert by_id is not None and by_id.name == "o-default" and by_id.vendor == "openai"
    assert small.model("openai", "o-default-2025") == by_id


def test_unknown_model_or_provider_has_no_entry(small: Registry) -> None:
    assert small.model("openai", "a-default") is None  # another vendor's model
    assert small.model("openai", "gpt-17") is None
    assert small.model("nope", "o-default") is None


def test_model_discount_overrides_the_provider_discount(small: Registry) -> None:
    anthropic_model, openai_model = (
        small.model("anthropic", "a-default"),
        small.model("openai", "o-other"),
    )
    assert anthropic_model is not None and anthropic_model.batch_discount == 0.4
    assert openai_model is not None and openai_model.batch_discount == 0.5
    gemini_model = small.model("gemini", "g-default")
    assert gemini_model is not None and gemini_model.batch_discount is None


def test_fake_prices_mirrored_models_as_their_vendor(small: Registry) -> None:
    info = small.model("fake", "a-short")
    assert info is not None
    assert (info.vendor, info.name, info.batch_discount) == ("anthropic", "a-default", 0.4)
    assert small.models("fake") == ()


def test_limits_model_over_provider(small: Registry) -> None:
    limits = small.limits("openai", "o-default")
    assert (limits.rpm, limits.tpm) == (500, 1000)
    assert (limits.batch_max_requests, limits.batch_max_bytes) == (50_000, 200_000_000)


def test_limits_of_an_unlisted_model_are_the_provider_defaults(small: Registry) -> None:
    assert small.limits("openai", "gpt-17").rpm == 100
    assert small.limits("openai").rpm == 100


def test_emulator_limits_are_its_own_not_the_vendors(small: Registry) -> None:
    limits = small.limits("fake", "o-default")
    assert (limits.rpm, limits.tpm, limits.batch_max_requests) == (None, None, 10)


def test_limits_of_unknown_provider_is_a_usage_error(small: Registry) -> None:
    with pytest.raises(UsageError):
        small.limits("nope", "x")


def test_api_key_env(small: Registry) -> None:
    assert small.api_key_env("openai") == ("OPENAI_API_KEY",)
    assert small.api_key_env("gemini") == ("GOOGLE_API_KEY", "GEMINI_API_KEY")
    assert small.api_key_env("fake") == ()


def test_providers_in_file_order(small: Registry) -> None:
    assert small.providers() == ("openai", "anthropic", "gemini", "openai-compatible", "fake")
    assert small.default_provider == "gemini"


# --- the file's schema refuses mistakes ---------------------------------------------------------


def _broken(old: str, new: str) -> str:
    assert old in SMALL
    return SMALL.replace(old, new, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            _broken("    default_model: o-default\n", "    default_model: o-gone\n"),
            "default_model 'o-gone' is not listed",
            id="default model not listed",
        ),
        pytest.param(
            _broken("default_provider: gemini", "default_provider: geminy"),
            "default_provider 'geminy' is not a provider",
            id="default provider",
        ),
        pytest.param(
            _broken(
                "        source: test\n      o-other:",
                "        source: test\n        colour: red\n      o-other:",
            ),
            "colour",
            id="unknown key",
        ),
        pytest.param(
            _broken("mirrors: [openai, anthropic, gemini]", "mirrors: [openia]"),
            "mirrors 'openia'",
            id="mirror of an unknown vendor",
        ),
        pytest.param(
            _broken("aliases: [a-short]", "aliases: [a-default]"),
            "used twice",
            id="duplicate alias",
        ),
        pytest.param(
            _broken("batch_discount: 0.4", "batch_discount: 1.5"),
            "less than or equal to 1",
            id="discount over 100%",
        ),
    ],
)
def test_schema_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_registry(text)


# --- the packaged registry -------------------------------------------------------------------


def test_packaged_registry_loads_once() -> None:
    assert load_registry() is load_registry()


def test_packaged_default_models_are_listed_and_priced() -> None:
    registry = load_registry()
    for provider in registry.providers():
        default = registry.default_model(provider)
        if provider == "openai-compatible":
            assert default is None  # nothing to price: the user names the served model
            continue
        assert default is not None and registry.model(provider, default) is not None, provider


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_packaged_models_are_priced_by_the_database_in_standard_and_batch(provider: str) -> None:
    registry = load_registry()
    models = registry.models(provider)
    assert models, f"{provider} lists no models"
    for info in models:
        standard = registry.rates(provider, info.name, "standard")
        batch = registry.rates(provider, info.name, "batch")
        assert standard is not None and batch is not None, info.name
        assert standard.source.startswith("genai-prices:"), info.name
        assert standard.base.input > 0 and standard.base.output > 0, info.name
        assert batch.base.input <= standard.base.input, info.name
        assert info.checked.year >= 2026 and info.source.startswith("https://"), info.name


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_packaged_batch_limits_and_discount(provider: str) -> None:
    registry = load_registry()
    limits = registry.limits(provider, registry.default_model(provider))
    assert limits.batch_max_bytes is not None
    assert registry.batch_discount(provider) == 0.5  # each vendor documents 50%
    assert limits.rpm is not None and limits.tpm is not None


def test_packaged_batch_limits_match_the_vendor_documents() -> None:
    registry = load_registry()
    assert registry.limits("openai").batch_max_requests == 50_000
    assert registry.limits("openai").batch_max_bytes == 200_000_000
    assert registry.limits("anthropic").batch_max_requests == 100_000
    assert registry.limits("anthropic").batch_max_bytes == 256_000_000
    assert registry.limits("gemini").batch_inline_max_bytes == 20_000_000


def test_packaged_octobatch_default_models_are_priced() -> None:
    """Octobatch pipelines that name its old defaults still get a known cost."""
    registry = load_registry()
    for provider, model in [
        ("gemini", "gemini-2.0-flash-001"),
        ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-sonnet-4-20250514"),
    ]:
        assert registry.model(provider, model) is not None, model
        assert registry.rates(provider, model, "standard") is not None, model


def test_registry_source_mentions_no_price_field() -> None:
    """Prices are read by costs.py only: the registry module names no rate field."""
    import octopipe.core.registry as module

    source = Path(module.__file__).read_text(encoding="utf-8")
    assert "per_million" not in source
    assert ".input" not in source and ".output" not in source


# --- plugin providers (known by name only) -----------------------------------------------------


def test_a_plugin_provider_is_known_by_name_and_has_no_models(small: Registry) -> None:
    plugged = Registry(small.data, plugins=("plug", "openai"))
    assert plugged.providers() == (*small.providers(), "plug")
    assert plugged.resolve("plug", "their-model") == Resolved("plug", "their-model")
    assert plugged.model("plug", "their-model") is None  # its cost is unknown, never guessed
    assert plugged.limits("plug", "their-model").rpm is None
    assert plugged.provider("openai") == small.provider("openai")  # the file's entry is kept
    with pytest.raises(UsageError, match="provider 'plug' has no default model"):
        plugged.resolve("plug")
