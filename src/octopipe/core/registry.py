"""The model registry shipped with the package: providers, models, limits -- and where prices
come from.

``providers/registry.yaml`` is parsed once (`load_registry`, cached) into frozen models that
refuse unknown keys. It holds only what the price database lacks: batch limits, default rate
limits, the vendors' batch discounts, aliases; each model row names its ``source`` and the date
it was ``checked``. This module answers *which* provider and model a step uses, which API-key
variables a provider reads, its limits, and -- `Registry.rates` -- a model's rates in a tier at
a time: a price file's (`with_prices`) first, then the maintained database
(``core/price_db.py``), then for batch the standard rate x the vendor's batch discount when the
database has no batch price that day. Rates are multiplied only by ``core/costs.py``.

Resolution (SPEC §4): CLI flag > step > ``api`` section > registry default, for the provider
and the model. A model belongs to the level that names the provider or a higher one: a model
given without a provider keeps the resolved provider, and a lower level's model is not carried
over to a provider chosen above it (``--provider anthropic`` does not inherit the config's
``gpt-4o-mini``; it gets Anthropic's default model). Two refinements:

- When no level names a provider and the model is unknown to the default provider but listed
  by exactly one vendor, that vendor is used (``model: claude-haiku-4-5`` alone means
  Anthropic), instead of sending a Claude model name to the default provider.
- A provider that *mirrors* vendors (``fake``, the local emulator) takes the model from any
  level, so ``--provider fake`` rehearses the pipeline with the models it names, priced as
  those vendors price them.

Plugin providers. A provider added by an installed package (the entry-point group
``octopipe.providers``, ``PLUGIN_GROUP``; see docs/PLUGINS.md) is known here by name only:
`load_registry` reads the entry points' *names* from the installed packages' metadata and
imports none of their code (that is ``providers/catalog.py``'s job, when the provider is used).
Such a provider lists no models and has no default model or limits: a step using it names its
model, and the cost of that model is unknown. Config validation (``core/config.py``) takes its
list of provider names from here, so a pipeline may name an installed plugin.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from octopipe.core import price_db
from octopipe.core.costs import Tier, TieredRates
from octopipe.core.price_file import PriceOverrides
from octopipe.errors import UsageError

REGISTRY_PACKAGE = "octopipe"  # not octopipe.providers: the core must not import that package
REGISTRY_FILE = ("providers", "registry.yaml")
PLUGIN_GROUP = "octopipe.providers"
"""The entry-point group through which installed packages add providers."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- the file's schema ------------------------------------------------------------------------


class LimitsEntry(_Frozen):
    """Limits as written in the file, on a provider (all its models) or on one model."""

    rpm: int | None = Field(default=None, gt=0)
    """Default realtime requests per minute (a usage-tier default, not your account's)."""
    tpm: int | None = Field(default=None, gt=0)
    """Default realtime tokens per minute (Anthropic: input tokens per minute)."""
    batch_max_requests: int | None = Field(default=None, gt=0)
    batch_max_bytes: int | None = Field(default=None, gt=0)
    batch_inline_max_bytes: int | None = Field(default=None, gt=0)
    """Gemini: requests sent inline (not as a file) must stay under this size."""
    basis: str | None = None
    """Where the numbers come from (e.g. "defaults: usage tier 1")."""


class ModelEntry(_Frozen):
    aliases: tuple[str, ...] = ()
    batch_discount: float | None = Field(default=None, gt=0, le=1)
    """Overrides the provider's discount for this model."""
    limits: LimitsEntry = Field(default_factory=LimitsEntry)
    checked: date
    """When this row (limits, aliases) was last compared with ``source``."""
    source: str
    note: str | None = None


class ProviderEntry(_Frozen):
    api_key_env: tuple[str, ...] = ()
    """Environment variables holding the key, first found wins; empty: no key needed."""
    default_model: str | None
    batch_discount: float | None = Field(default=None, gt=0, le=1)
    """Batch price = realtime price x this, unless a model gives explicit batch prices.
    ``None``: no batch discount known (batch cost is unknown)."""
    batch_discount_source: str | None = None
    limits: LimitsEntry = Field(default_factory=LimitsEntry)
    mirrors: tuple[str, ...] = ()
    """Vendors whose models this provider accepts and prices as they do (the emulator)."""
    price_database_id: str | None = None
    """The provider's id in the price database (genai-prices); ``None``: it has none."""
    models: dict[str, ModelEntry] = Field(default_factory=dict)
    note: str | None = None

    @field_validator("api_key_env", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if value is None:
            return ()
        return (value,) if isinstance(value, str) else value


class RegistryFile(_Frozen):
    version: Literal[1]
    default_provider: str
    providers: dict[str, ProviderEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> RegistryFile:
        if self.default_provider not in self.providers:
            raise ValueError(f"default_provider {self.default_provider!r} is not a provider")
        for name, entry in self.providers.items():
            _check_provider(name, entry, self.providers)
        return self


def _check_provider(name: str, entry: ProviderEntry, providers: dict[str, ProviderEntry]) -> None:
    for vendor in entry.mirrors:
        if vendor not in providers or vendor == name or providers[vendor].mirrors:
            raise ValueError(f"provider {name!r} mirrors {vendor!r}, which is not a vendor")
    names: dict[str, str] = {}
    for model_id, model in entry.models.items():
        for alias in (model_id, *model.aliases):
            if alias in names:
                raise ValueError(f"{name}: model name {alias!r} is used twice")
            names[alias] = model_id
    if entry.default_model is None:
        return
    listed = set(names)
    for vendor in entry.mirrors:
        listed |= {a for m_id, m in providers[vendor].models.items() for a in (m_id, *m.aliases)}
    if entry.default_model not in listed:
        raise ValueError(f"{name}: default_model {entry.default_model!r} is not listed")


# --- what callers get ------------------------------------------------------------------------


class ModelInfo(_Frozen):
    """One model, as the registry lists it under its vendor."""

    name: str
    vendor: str
    """The provider whose list holds it (for ``fake``, the mirrored vendor)."""
    aliases: tuple[str, ...]
    batch_discount: float | None
    """The model's own discount, else its vendor's (`costs` derives batch prices with it)."""
    limits: LimitsEntry
    checked: date
    source: str
    note: str | None = None


@dataclass(frozen=True)
class Limits:
    """The limits that apply to one (provider, model); ``None`` means no limit is known."""

    rpm: int | None
    tpm: int | None
    batch_max_requests: int | None
    batch_max_bytes: int | None
    batch_inline_max_bytes: int | None = None


class Resolved(NamedTuple):
    provider: str
    model: str


class Registry:
    """The parsed registry. Build with `load_registry` (packaged file) or `parse_registry`."""

    def __init__(
        self,
        data: RegistryFile,
        prices: PriceOverrides | None = None,
        plugins: Iterable[str] = (),
    ) -> None:
        """``prices``: the user's price overrides; ``plugins``: names of plugin providers (see
        the module doc); a name the file already lists keeps the file's entry."""
        self.data = data
        self.overrides = prices or PriceOverrides()
        self._plugins = tuple(plugins)
        self._entries = dict(data.providers)
        for name in self._plugins:
            self._entries.setdefault(name, ProviderEntry(default_model=None))
        self._models: dict[str, dict[str, ModelInfo]] = {}
        self._own: dict[str, tuple[ModelInfo, ...]] = {}
        for name, entry in self._entries.items():
            infos = tuple(_model_info(name, entry, m_id, m) for m_id, m in entry.models.items())
            self._own[name] = infos
            self._models[name] = {a: info for info in infos for a in (info.name, *info.aliases)}

    @property
    def default_provider(self) -> str:
        return self.data.default_provider

    def providers(self) -> tuple[str, ...]:
        """Provider names, in the file's order, then the plugins'."""
        return tuple(self._entries)

    def database_id(self, vendor: str) -> str | None:
        """``vendor``'s provider id in the price database (None for one it does not hold)."""
        entry = self._entries.get(vendor)
        return None if entry is None else entry.price_database_id

    def price_file_providers(self) -> tuple[str, ...]:
        """The providers a price file may name: every one that prices its own models (not a
        provider that mirrors another's, like the emulator)."""
        return tuple(name for name, entry in self._entries.items() if not entry.mirrors)

    def provider(self, name: str) -> ProviderEntry:
        """The provider's entry; `UsageError` naming the known ones when there is none."""
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self._entries)
            raise UsageError(f"unknown provider {name!r}; expected one of {known}") from None

    def models(self, provider: str) -> tuple[ModelInfo, ...]:
        """The models ``provider`` lists itself (a mirroring provider lists none)."""
        self.provider(provider)
        return self._own[provider]

    def model(self, provider: str, model: str) -> ModelInfo | None:
        """The registry entry of ``model`` (an id or alias) at ``provider``; ``None`` when the
        provider or the model is unknown: its price is then unknown, never guessed."""
        entry = self._entries.get(provider)
        if entry is None:
            return None
        for name in (provider, *entry.mirrors):
            info = self._models[name].get(model)
            if info is not None:
                return info
        return None

    def with_prices(self, prices: PriceOverrides) -> Registry:
        """This registry with ``prices`` (a price file's) in front of the database."""
        return Registry(self.data, self.overrides.layered_over(prices), plugins=self._plugins)

    def price_vendors(self, provider: str) -> tuple[str, ...]:
        """Whose prices a call at ``provider`` is billed at: itself, or for ``fake`` the
        vendors it mirrors (first that knows the model wins)."""
        entry = self.data.providers.get(provider)
        if entry is None:
            return ()
        return entry.mirrors or (provider,)

    def rates(
        self, provider: str, model: str, tier: Tier, at: datetime | None = None
    ) -> TieredRates | None:
        """``model``'s rates at ``provider`` in ``tier`` at ``at`` (``None``: now), or ``None``
        when no source prices it (see the module doc). A price file's entry for a model
        replaces the database's for every tier: a tier it does not give is unknown."""
        for vendor in self.price_vendors(provider):
            info = self.model(vendor, model)
            names = (model,) if info is None else (model, info.name)
            for name in names:
                own = self.overrides.find(vendor, name)
                if own is not None:
                    return own.tiers.get(tier)
            for name in names:
                found = price_db.rates_at(self.database_id(vendor), name, tier, at)
                if found is not None:
                    return found
                if tier == "batch":
                    derived = self._derived_batch(vendor, name, at)
                    if derived is not None:
                        return derived
                if price_db.database_model_id(self.database_id(vendor), name) is not None:
                    return None  # the database knows the model: this tier is not offered
        return None

    def _derived_batch(self, vendor: str, model: str, at: datetime | None) -> TieredRates | None:
        info = self.model(vendor, model)
        discount = info.batch_discount if info is not None else self.batch_discount(vendor)
        if discount is None:
            return None
        standard = price_db.rates_at(self.database_id(vendor), model, "standard", at)
        if standard is None:
            return None
        source = f"{standard.source} x batch_discount {discount:g} ({REGISTRY_FILE[1]})"
        return standard.scaled(discount, source)

    def default_model(self, provider: str) -> str | None:
        return self.provider(provider).default_model

    def api_key_env(self, provider: str) -> tuple[str, ...]:
        """Environment variables that may hold ``provider``'s key, first found wins."""
        return self.provider(provider).api_key_env

    def batch_discount(self, provider: str) -> float | None:
        return self.provider(provider).batch_discount

    def limits(self, provider: str, model: str | None = None) -> Limits:
        """Provider limits, overridden field by field by the model's own (only for a model
        the provider lists itself: a mirrored model's vendor limits are not the emulator's)."""
        base = self.provider(provider).limits
        own = self._models[provider].get(model) if model is not None else None
        layers = [base] if own is None else [own.limits, base]

        def first(field: str) -> Any:
            return next((v for v in (getattr(lim, field) for lim in layers) if v is not None), None)

        return Limits(
            rpm=first("rpm"),
            tpm=first("tpm"),
            batch_max_requests=first("batch_max_requests"),
            batch_max_bytes=first("batch_max_bytes"),
            batch_inline_max_bytes=first("batch_inline_max_bytes"),
        )

    def resolve(
        self,
        provider_cli: str | None = None,
        model_cli: str | None = None,
        step_provider: str | None = None,
        step_model: str | None = None,
        api_provider: str | None = None,
        api_model: str | None = None,
    ) -> Resolved:
        """Provider and model for one step: CLI > step > ``api`` > registry (module doc)."""
        levels = ((provider_cli, model_cli), (step_provider, step_model), (api_provider, api_model))
        named = next((i for i, (p, _) in enumerate(levels) if p), None)
        if named is None:
            model = _first(m for _, m in levels)
            provider = self._provider_for(model)
        else:
            provider = levels[named][0] or ""
            entry = self.provider(provider)
            reach = levels if entry.mirrors else levels[: named + 1]
            model = _first(m for _, m in reach)
        model = model or self.provider(provider).default_model
        if not model:
            raise UsageError(
                f"provider {provider!r} has no default model: name one with "
                "--model, the step's 'model' or 'api.model'"
            )
        return Resolved(provider, model)

    def _provider_for(self, model: str | None) -> str:
        default = self.default_provider
        if model is None or self.model(default, model) is not None:
            return default
        vendors = [
            name
            for name, entry in self.data.providers.items()
            if not entry.mirrors and model in self._models[name]
        ]
        return vendors[0] if len(vendors) == 1 else default


def _first(values: Any) -> str | None:
    return next((v for v in values if v), None)


def _model_info(vendor: str, entry: ProviderEntry, model_id: str, model: ModelEntry) -> ModelInfo:
    discount = model.batch_discount if model.batch_discount is not None else entry.batch_discount
    return ModelInfo(
        name=model_id,
        vendor=vendor,
        aliases=model.aliases,
        batch_discount=discount,
        limits=model.limits,
        checked=model.checked,
        source=model.source,
        note=model.note,
    )


def parse_registry(text: str) -> Registry:
    """Parse registry YAML; raises ``ValueError`` (pydantic's) naming what is wrong."""
    return Registry(RegistryFile.model_validate(yaml.safe_load(text)))


@functools.cache
def load_registry() -> Registry:
    """The registry shipped with the package, with the installed plugin providers' names,
    parsed once per process."""
    folder, name = REGISTRY_FILE
    resource = resources.files(REGISTRY_PACKAGE).joinpath(folder).joinpath(name)
    data = RegistryFile.model_validate(yaml.safe_load(resource.read_text(encoding="utf-8")))
    return Registry(data, plugins=[ep.name for ep in plugin_entry_points()])


def plugin_entry_points() -> tuple[EntryPoint, ...]:
    """The installed ``octopipe.providers`` entry points, first of each name (metadata only:
    nothing is imported)."""
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=PLUGIN_GROUP):
        found.setdefault(entry.name, entry)
    return tuple(found.values())
