"""The provider catalog: one ``ProviderSpec`` per provider, built-in or added by a plugin.

Not to be confused with the *model registry* (``core/registry.py``, ``providers/registry.yaml``:
models, prices, limits). The catalog says what each provider *is* to the code: how to build
its realtime and batch adapters, where its key and server address come from, what it can do.
Every other module asks the catalog (``catalog()``) instead of spelling provider names.

What this module guarantees:

- The built-in providers are ``openai``, ``anthropic``, ``gemini`` and ``openai-compatible``;
  ``fake`` (``FAKE``) is the local emulator, which speaks the wire format of every spec marked
  ``emulated`` (``fake:<vendor>``) and is set up by the engine, not built from a spec.
- A third-party package adds a provider through the entry-point group ``octopipe.providers``
  (``PLUGIN_GROUP``; see docs/PLUGINS.md). Its name is known as soon as the package is
  installed (metadata only); its code is imported only when the provider is used. A plugin
  cannot replace a built-in or ``fake``, and one that fails to load is a ``UsageError``
  naming it, raised when that provider is asked for, never for a run that does not use it.
- Vendor SDKs are imported only when an adapter is built, and SDK retries stay off (the
  engine retries).
- ``resolve_api_key`` reads the spec's key variables in order (first set wins) and names them
  when none is set; a spec with ``key_optional`` gets a placeholder key instead, so that a
  real vendor key is never sent to a local server by accident.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint

from octopipe.core.registry import PLUGIN_GROUP, load_registry, plugin_entry_points
from octopipe.errors import MissingApiKey, UsageError
from octopipe.providers.base import ProviderSettings, RealtimeProvider
from octopipe.providers.batch_base import BatchProvider

FAKE = "fake"
"""The local emulator's provider name (``fake`` or ``fake:<vendor>`` on the command line)."""

DUMMY_API_KEY = "octopipe-no-key"
"""Sent when a ``key_optional`` provider has no key set (local servers accept any key; the
SDK insists on a non-empty one)."""

RealtimeFactory = Callable[[ProviderSettings], RealtimeProvider]
BatchFactory = Callable[[ProviderSettings], BatchProvider]


@dataclass(frozen=True)
class ProviderSpec:
    """What octopipe needs to know to use one provider."""

    name: str
    """The name pipelines and ``--provider`` use."""
    realtime: RealtimeFactory
    """Builds the realtime adapter (``RealtimeProvider``) from the settings."""
    batch: BatchFactory | None = None
    """Builds the batch adapter (``BatchProvider``); ``None``: the provider has no batch API."""
    key_variables: tuple[str, ...] = ()
    """Environment variables holding the API key, in precedence order (first set wins)."""
    key_optional: bool = False
    """No key set is fine: ``DUMMY_API_KEY`` is sent (local servers)."""
    base_url_variable: str | None = None
    """The variable the SDK reads its server address from, when it reads one."""
    needs_base_url: bool = False
    """The provider has no default server: one must be given (``--base-url``, ``api.base_url``
    or ``base_url_variable``); ``--base-url`` applies to these providers only."""
    can_find: bool = False
    """Its batches carry metadata, so a batch lost in a crash is found by its intent key
    (``BatchProvider.finder()`` is not ``None``); otherwise it is matched by size and time."""
    emulated: bool = False
    """The local emulator speaks this provider's wire format (``--provider fake:<name>``)."""
    raw_input_includes_cached: bool = True
    """Whether the vendor's own input-token count includes prompt-cache hits (the adapters
    normalise it: ``base.Usage``)."""
    flex: bool = False
    """Its realtime adapter can ask for the flex tier (``LLMRequest.service_tier="flex"``:
    slower, sometimes "resource unavailable", at flex prices); ``run --flex`` is refused for
    the others."""
    description: str = field(default="", compare=False)

    @property
    def has_batch(self) -> bool:
        return self.batch is not None


class Catalog:
    """The built-in specs and the installed plugins' (loaded on first use)."""

    def __init__(
        self, builtins: tuple[ProviderSpec, ...], plugins: tuple[EntryPoint, ...] = ()
    ) -> None:
        self._specs = {spec.name: spec for spec in builtins}
        self._builtin_names = tuple(self._specs)
        reserved = {*self._specs, FAKE}
        self._plugins = {ep.name: ep for ep in plugins if ep.name not in reserved}

    def names(self) -> tuple[str, ...]:
        """Every provider name a pipeline may use: built-ins, ``fake``, then plugins."""
        return (*self._builtin_names, FAKE, *self._plugins)

    def spec(self, name: str) -> ProviderSpec:
        """The spec of ``name``; ``UsageError`` naming the known providers when there is none
        (``fake`` has none: the engine sets the emulator up)."""
        found = self.get(name)
        if found is None:
            known = ", ".join(n for n in self.names() if n != FAKE)
            raise UsageError(f"unknown provider {name!r}; known providers: {known}")
        return found

    def get(self, name: str) -> ProviderSpec | None:
        """The spec of ``name``, or ``None`` for ``fake`` and unknown names."""
        if name not in self._specs and name in self._plugins:
            self._specs[name] = _load_plugin(self._plugins[name])
        return self._specs.get(name)

    def builtins(self) -> tuple[ProviderSpec, ...]:
        """The built-in specs (no plugin is loaded)."""
        return tuple(self._specs[n] for n in self._builtin_names)

    def emulated(self) -> tuple[str, ...]:
        """The vendors the emulator speaks (``fake:<vendor>``), the first being ``fake``'s."""
        return tuple(n for n in self._builtin_names if self._specs[n].emulated)

    def has_batch(self, name: str) -> bool:
        """Whether ``name`` has a batch API (``fake`` emulates its vendors')."""
        if name == FAKE:
            return True
        spec = self.get(name)
        return spec is not None and spec.has_batch

    def batch_names(self) -> str:
        """The built-in providers with a batch API, as a phrase (``a, b or c``)."""
        names = [n for n in self._builtin_names if self._specs[n].has_batch]
        return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else "".join(names)


def _load_plugin(entry: EntryPoint) -> ProviderSpec:
    where = f"provider plugin {entry.name!r} ({entry.value})"
    try:
        loaded = entry.load()
        spec = loaded if isinstance(loaded, ProviderSpec) else loaded()
    except Exception as exc:  # a broken plugin: name it, never crash on it
        raise UsageError(f"{where} failed to load: {type(exc).__name__}: {exc}") from None
    if not isinstance(spec, ProviderSpec) or spec.name != entry.name:
        raise UsageError(
            f"{where} must name a ProviderSpec (or a function returning one) whose name is "
            f"{entry.name!r}; got {spec!r:.100}"
        )
    return spec


@functools.cache
def catalog() -> Catalog:
    """The providers of this installation, built once per process."""
    return Catalog(builtin_specs(), plugin_entry_points())


def builtin_specs() -> tuple[ProviderSpec, ...]:
    """The four built-in providers; their key variables are the model registry's."""
    keys = load_registry().api_key_env
    return (
        ProviderSpec(
            "openai",
            _openai,
            _openai_batch,
            keys("openai"),
            base_url_variable="OPENAI_BASE_URL",
            can_find=True,
            emulated=True,
            flex=True,
            description="OpenAI Chat Completions and Batch API",
        ),
        ProviderSpec(
            "anthropic",
            _anthropic,
            _anthropic_batch,
            keys("anthropic"),
            base_url_variable="ANTHROPIC_BASE_URL",
            emulated=True,
            raw_input_includes_cached=False,
            description="Anthropic Messages and Message Batches",
        ),
        ProviderSpec(
            "gemini",
            _gemini,
            _gemini_batch,
            keys("gemini"),
            base_url_variable="GOOGLE_GEMINI_BASE_URL",
            can_find=True,
            emulated=True,
            description="Google Gemini Developer API and its batch mode",
        ),
        ProviderSpec(
            "openai-compatible",
            _openai_compatible,
            None,
            keys("openai-compatible"),
            key_optional=True,
            base_url_variable="OPENAI_BASE_URL",
            needs_base_url=True,
            description="a server speaking OpenAI's Chat Completions (vLLM, Ollama, llama.cpp)",
        ),
    )


# --- building adapters ------------------------------------------------------------------------


def resolve_api_key(provider: str, env: Mapping[str, str] | None = None) -> str:
    """The API key for ``provider`` from ``env`` (default: ``os.environ``); ``MissingApiKey``
    naming the variable(s) to set (see the module doc)."""
    spec = catalog().spec(provider)
    environ = os.environ if env is None else env
    for name in spec.key_variables:
        value = environ.get(name, "").strip()
        if value:
            return value
    if spec.key_optional or not spec.key_variables:
        return DUMMY_API_KEY
    wanted = " or ".join(spec.key_variables)
    raise MissingApiKey(f"no API key: set {wanted} (environment or .env)", provider=provider)


def make_provider(
    settings: ProviderSettings, env: Mapping[str, str] | None = None
) -> RealtimeProvider:
    """The realtime adapter of ``settings.provider``. A provider that ``needs_base_url`` gets
    one explicitly or through its ``base_url_variable`` in ``env``: without one the SDK would
    send the request to the vendor's own server."""
    spec = catalog().spec(settings.provider)
    if spec.needs_base_url:
        _require_base_url(spec, settings, os.environ if env is None else env)
    provider = spec.realtime(settings)
    _check_declared(spec.name, provider)
    return provider


REALTIME_MEMBERS = ("name", "endpoint", "complete", "aclose")
"""What a realtime adapter declares (``RealtimeProvider``); the engine reads them unprobed."""


def _check_declared(name: str, provider: object) -> None:
    """``UsageError`` naming what a provider (a plugin's, typically) does not declare, at start
    rather than as an ``AttributeError`` mid-run."""
    missing = [m for m in REALTIME_MEMBERS if not hasattr(provider, m)]
    if missing:
        raise UsageError(
            f"provider {name!r}: its realtime adapter lacks {', '.join(missing)} "
            "(see octopipe.providers.RealtimeProvider)"
        )


def make_batch_provider(settings: ProviderSettings) -> BatchProvider:
    """The batch adapter of ``settings.provider``; ``UsageError`` for one without a batch API."""
    spec = catalog().spec(settings.provider)
    if spec.batch is None:
        raise UsageError(f"provider {spec.name!r} has no batch API; use {catalog().batch_names()}")
    return spec.batch(settings)


def _require_base_url(
    spec: ProviderSpec, settings: ProviderSettings, env: Mapping[str, str]
) -> None:
    variable = spec.base_url_variable
    if settings.base_url or (variable and env.get(variable, "").strip()):
        return
    raise UsageError(
        f"provider {spec.name!r} needs a base_url (for example http://127.0.0.1:8000/v1)"
        + (f" or {variable} in the environment" if variable else "")
    )


# Each factory imports its SDK only when called (an SDK takes about a second to import).


def _openai(settings: ProviderSettings) -> RealtimeProvider:
    from octopipe.providers.openai_adapter import OpenAIProvider

    return OpenAIProvider(settings)


def _openai_compatible(settings: ProviderSettings) -> RealtimeProvider:
    from octopipe.providers.openai_adapter import OpenAIProvider

    return OpenAIProvider(settings, legacy_max_tokens=True)


def _anthropic(settings: ProviderSettings) -> RealtimeProvider:
    from octopipe.providers.anthropic_adapter import AnthropicProvider

    return AnthropicProvider(settings)


def _gemini(settings: ProviderSettings) -> RealtimeProvider:
    from octopipe.providers.gemini_adapter import GeminiProvider

    return GeminiProvider(settings)


def _openai_batch(settings: ProviderSettings) -> BatchProvider:
    from octopipe.providers.batch_openai import OpenAIBatchProvider

    return OpenAIBatchProvider(settings)


def _anthropic_batch(settings: ProviderSettings) -> BatchProvider:
    from octopipe.providers.batch_anthropic import AnthropicBatchProvider

    return AnthropicBatchProvider(settings)


def _gemini_batch(settings: ProviderSettings) -> BatchProvider:
    from octopipe.providers.batch_gemini import GeminiBatchProvider

    return GeminiBatchProvider(settings)


__all__ = [
    "DUMMY_API_KEY",
    "FAKE",
    "PLUGIN_GROUP",
    "Catalog",
    "ProviderSpec",
    "builtin_specs",
    "catalog",
    "make_batch_provider",
    "make_provider",
    "resolve_api_key",
]
