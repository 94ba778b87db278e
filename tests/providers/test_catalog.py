"""The provider catalog: the built-in specs, what they can do, and plugins by entry point."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint
from pathlib import Path
from types import ModuleType

import pytest

from octopipe.core.registry import load_registry
from octopipe.errors import MissingApiKey, UsageError
from octopipe.providers.base import ProviderSettings
from octopipe.providers.catalog import (
    DUMMY_API_KEY,
    FAKE,
    Catalog,
    ProviderSpec,
    builtin_specs,
    catalog,
    make_batch_provider,
    resolve_api_key,
)


def test_the_catalog_and_the_model_registry_name_the_same_providers() -> None:
    assert catalog().names() == ("openai", "anthropic", "gemini", "openai-compatible", FAKE)
    assert load_registry().providers() == catalog().names()


@pytest.mark.parametrize(
    ("name", "batch", "can_find", "needs_base_url", "cached_included"),
    [
        ("openai", True, True, False, True),
        ("anthropic", True, False, False, False),  # input_tokens excludes cache reads
        ("gemini", True, True, False, True),
        ("openai-compatible", False, False, True, True),
    ],
)
def test_builtin_capabilities(
    name: str, batch: bool, can_find: bool, needs_base_url: bool, cached_included: bool
) -> None:
    spec = catalog().spec(name)
    assert (spec.has_batch, spec.can_find, spec.needs_base_url) == (batch, can_find, needs_base_url)
    assert spec.raw_input_includes_cached is cached_included
    assert spec.key_variables == load_registry().api_key_env(name)


def test_the_emulator_speaks_the_three_vendors_and_has_their_batch_apis() -> None:
    assert catalog().emulated() == ("openai", "anthropic", "gemini")
    assert catalog().has_batch(FAKE) and not catalog().has_batch("openai-compatible")
    assert catalog().batch_names() == "openai, anthropic or gemini"
    assert catalog().get(FAKE) is None and catalog().get("nobody") is None


def test_an_unknown_name_is_refused_listing_the_known_ones() -> None:
    with pytest.raises(UsageError) as raised:
        catalog().spec("mistral")
    assert raised.value.message == (
        "unknown provider 'mistral'; known providers: openai, anthropic, gemini, openai-compatible"
    )


def test_a_provider_without_batch_api_builds_no_batch_adapter() -> None:
    with pytest.raises(UsageError) as raised:
        make_batch_provider(ProviderSettings("openai-compatible", "k"))
    assert raised.value.message == (
        "provider 'openai-compatible' has no batch API; use openai, anthropic or gemini"
    )


# --- plugins ----------------------------------------------------------------------------------


def _answerer(settings: ProviderSettings) -> object:
    return object()


PLUGIN_SPEC = ProviderSpec("plug", _answerer, key_variables=("PLUG_KEY", "PLUG_OLD_KEY"))


@pytest.fixture
def plugin_module(monkeypatch: pytest.MonkeyPatch) -> str:
    module = ModuleType("octopipe_test_plugin")
    module.SPEC = PLUGIN_SPEC  # type: ignore[attr-defined]
    module.make = lambda: PLUGIN_SPEC  # type: ignore[attr-defined]
    module.wrong = lambda: ProviderSpec("other", _answerer)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module.__name__


def _catalog(*entries: tuple[str, str]) -> Catalog:
    group = "octopipe.providers"
    return Catalog(builtin_specs(), tuple(EntryPoint(n, v, group) for n, v in entries))


@pytest.mark.parametrize("target", ["SPEC", "make"])
def test_a_plugin_names_a_spec_or_a_function_returning_one(plugin_module: str, target: str) -> None:
    plugins = _catalog(("plug", f"{plugin_module}:{target}"))
    assert plugins.names()[-2:] == (FAKE, "plug")
    assert plugins.spec("plug") is PLUGIN_SPEC
    assert not plugins.has_batch("plug")


def test_a_plugin_cannot_replace_a_builtin_or_the_emulator(plugin_module: str) -> None:
    plugins = _catalog(("openai", f"{plugin_module}:SPEC"), (FAKE, f"{plugin_module}:SPEC"))
    assert plugins.names() == catalog().names()
    assert plugins.spec("openai") == catalog().spec("openai")


def test_a_plugin_is_not_imported_until_its_provider_is_used() -> None:
    plugins = _catalog(("ghost", "octopipe_no_such_module:SPEC"))
    assert "ghost" in plugins.names()
    assert plugins.spec("openai").name == "openai"  # other providers work
    with pytest.raises(UsageError) as raised:
        plugins.spec("ghost")
    assert raised.value.message == (
        "provider plugin 'ghost' (octopipe_no_such_module:SPEC) failed to load: "
        "ModuleNotFoundError: No module named 'octopipe_no_such_module'"
    )


def test_a_plugin_whose_spec_has_another_name_is_refused(plugin_module: str) -> None:
    plugins = _catalog(("plug", f"{plugin_module}:wrong"))
    with pytest.raises(UsageError, match="whose name is 'plug'"):
        plugins.spec("plug")


# --- keys -------------------------------------------------------------------------------------


def test_keys_are_read_in_the_specs_order_and_missing_ones_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from octopipe.providers import catalog as module

    monkeypatch.setattr(module, "catalog", lambda: Catalog((PLUGIN_SPEC,)))
    assert resolve_api_key("plug", {"PLUG_OLD_KEY": "old", "PLUG_KEY": "new"}) == "new"
    assert resolve_api_key("plug", {"PLUG_OLD_KEY": "old"}) == "old"
    with pytest.raises(MissingApiKey) as raised:
        resolve_api_key("plug", {})
    assert "no API key: set PLUG_KEY or PLUG_OLD_KEY" in str(raised.value)


def test_a_local_server_gets_a_placeholder_never_another_vendors_key() -> None:
    env = {"OPENAI_API_KEY": "real-openai-key"}
    assert resolve_api_key("openai-compatible", env) == DUMMY_API_KEY


def test_the_plugin_doc_fits_on_one_screen() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "PLUGINS.md"
    lines = doc.read_text(encoding="utf-8").splitlines()
    assert 10 < len(lines) <= 60
    assert "octopipe.providers" in doc.read_text(encoding="utf-8")
