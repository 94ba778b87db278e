"""Checks of a run's provider settings made before anything is created, started or sent.

``octopipe run`` calls ``check_provider_settings`` before it creates a run from a pipeline
(so a mistake leaves no pending run behind) and before it resumes one (so it leaves the run
as it was). What is checked, step by step, with the provider and model each LLM step resolves
to (CLI flag > step > ``api`` > registry default):

- a step whose provider has no default server (``ProviderSpec.needs_base_url``: the built-in
  ``openai-compatible``) has a server address: ``--base-url``, the one recorded with the run,
  ``api.base_url``, or the spec's ``base_url_variable`` (``OPENAI_BASE_URL``);
- ``--base-url`` is a plain ``http(s)://host[:port]/path`` (credentials belong in the
  provider's key variable, never in a URL that is recorded with the run), and some step
  uses such a provider;
- with flex (``--flex`` or ``api.realtime.service_tier: flex``; realtime only), every step's
  provider offers the flex tier (``ProviderSpec.flex``) and its model has a flex price;
- with a cost cap (``--max-cost`` or ``api.realtime.cost_cap_usd``), every step's model has
  a known price in the run's mode: a cap that cannot be counted is refused, never ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from octopipe.core.config import Pipeline
from octopipe.core.config_models import LLMStep
from octopipe.core.costs import Mode
from octopipe.core.registry import load_registry
from octopipe.engine.prices import price_registry
from octopipe.engine.providers_setup import split_fake
from octopipe.engine.routes import refuse_unflexible, refuse_unpriced_cap
from octopipe.errors import UsageError
from octopipe.providers.catalog import FAKE, ProviderSpec, catalog


@dataclass(frozen=True)
class StepProvider:
    step: str
    provider: str
    model: str


def step_providers(
    pipeline: Pipeline, provider: str | None, model: str | None
) -> list[StepProvider]:
    """The provider and model of every LLM step, resolved as the executors resolve them."""
    registry = load_registry()
    name, _ = split_fake(provider)
    api = pipeline.config.api
    out = []
    for step in pipeline.steps:
        if isinstance(step, LLMStep):
            resolved = registry.resolve(
                name, model, step.provider, step.model, api.provider, api.model
            )
            out.append(StepProvider(step.name, resolved.provider, resolved.model))
    return out


def check_base_url(url: str) -> str:
    """``url`` if it is a usable server address; ``UsageError`` saying why not otherwise."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        host = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError as exc:
        raise UsageError(f"--base-url {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host or any(c.isspace() for c in text):
        raise UsageError(
            f"--base-url {url!r} is not an http(s) address; for example http://127.0.0.1:8000/v1"
        )
    if parts.username is not None or parts.password is not None:
        keys = " or ".join(v for s in _base_url_specs() for v in s.key_variables)
        raise UsageError(
            "--base-url must not carry credentials (they would be recorded with the run); "
            f"put the key in {keys}"
        )
    return text


def check_provider_settings(
    pipeline: Pipeline,
    *,
    mode: Mode,
    provider: str | None,
    model: str | None,
    base_url: str | None,
    max_cost_usd: float | None,
    recorded_base_url: str | None = None,
    env: Mapping[str, str] | None = None,
    flex: bool | None = None,
) -> list[StepProvider]:
    """Refuse settings that cannot work (see the module doc); returns the steps' providers.
    ``base_url`` is ``--base-url``; ``recorded_base_url`` the one kept with the run."""
    environ = os.environ if env is None else env
    steps = step_providers(pipeline, provider, model)
    specs = {s.provider: spec for s in steps if (spec := _needs_base_url(s.provider))}
    served = [s for s in steps if s.provider in specs]
    if base_url is not None and not served:
        used = ", ".join(sorted({s.provider for s in steps})) or "no LLM step"
        names = " or ".join(s.name for s in _base_url_specs())
        raise UsageError(
            f"--base-url is the address of an {names} server, and no step of this run "
            f"uses that provider (they use: {used})"
        )
    for step in served:
        variable = specs[step.provider].base_url_variable
        from_env = environ.get(variable, "").strip() if variable else ""
        if base_url or recorded_base_url or pipeline.config.api.base_url or from_env:
            continue
        raise UsageError(
            f"step {step.step!r} uses provider {step.provider!r}, which needs the "
            "server's address: set api.base_url in the config, pass --base-url URL"
            + (f" or set {variable}" if variable else "")
            + " (for example http://127.0.0.1:8000/v1)"
        )
    cap = max_cost_usd or pipeline.config.api.realtime.cost_cap_usd
    registry = price_registry(pipeline)
    priced = [(s.step, s.provider, s.model, s.provider) for s in steps]
    if mode == "realtime" and wants_flex(pipeline, flex):
        _, vendor = split_fake(provider)
        refuse_unflexible(priced, registry, lambda name: can_flex(name, vendor))
    refuse_unpriced_cap(priced, registry, mode, cap)
    return steps


def wants_flex(pipeline: Pipeline, flex: bool | None) -> bool:
    """``--flex`` given (``flex``), else ``api.realtime.service_tier``."""
    return flex if flex is not None else pipeline.config.api.realtime.service_tier == "flex"


def can_flex(provider: str, vendor: str | None = None) -> bool:
    """Whether ``provider`` offers the flex tier (``fake``: the vendor it emulates)."""
    if provider == FAKE:
        provider = vendor or catalog().emulated()[0]
    spec = catalog().get(provider)
    return spec is not None and spec.flex


def _needs_base_url(provider: str) -> ProviderSpec | None:
    spec = catalog().get(provider)
    return spec if spec is not None and spec.needs_base_url else None


def _base_url_specs() -> list[ProviderSpec]:
    """The built-in providers ``--base-url`` is for: those with no default server."""
    return [s for s in catalog().builtins() if s.needs_base_url]


__all__ = ["StepProvider", "check_base_url", "check_provider_settings", "step_providers"]
