"""Where each LLM step's requests go: provider, model, request settings and price list.

Both executors (realtime and batch) resolve steps the same way: CLI flag > step > ``api``
section > registry default, and build every request of a step from the same defaults, so a
unit's prompt, schema and limits do not depend on the mode it runs in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from octopipe.core.amounts import format_usd
from octopipe.core.config_models import LLMStep
from octopipe.core.costs import Mode, Tier, TokenCounts, cost_usd
from octopipe.core.registry import Registry
from octopipe.core.steps import CompiledPipeline, CompiledStep
from octopipe.errors import UsageError


@dataclass(frozen=True)
class StepRoute:
    """One LLM step resolved: ``request_defaults`` are ``LLMRequest`` keyword arguments."""

    index: int
    cstep: CompiledStep
    provider: str
    model: str
    request_defaults: dict[str, Any]
    price_provider: str


def resolve_routes(
    compiled: CompiledPipeline,
    registry: Registry,
    provider: str | None,
    model: str | None,
    price_as: dict[str, str],
) -> list[StepRoute | None]:
    """One entry per step of the pipeline: a ``StepRoute`` for LLM steps, ``None`` for the
    others (so the list is indexed like the steps)."""
    pipeline = compiled.pipeline
    api = pipeline.config.api
    out: list[StepRoute | None] = []
    for index, cstep in enumerate(compiled.steps):
        step = cstep.step
        if not isinstance(step, LLMStep):
            out.append(None)
            continue
        resolved = registry.resolve(
            provider, model, step.provider, step.model, api.provider, api.model
        )
        structured = (
            step.structured_output if step.structured_output is not None else api.structured_output
        )
        defaults = {
            "model": resolved.model,
            "system": step.system,
            "schema": pipeline.schema_for(step.name),
            "schema_name": step.name,
            "structured_output": structured,
            "max_tokens": step.max_tokens or api.max_tokens,
            "temperature": step.temperature if step.temperature is not None else api.temperature,
            "timeout_s": api.request_timeout_seconds,
        }
        out.append(
            StepRoute(
                index,
                cstep,
                resolved.provider,
                resolved.model,
                defaults,
                price_as.get(resolved.provider, resolved.provider),
            )
        )
    return out


FLEX_TIMEOUT_S = 900.0
"""The request timeout of a flex call (unless ``api.request_timeout_seconds`` is longer):
flex answers more slowly than the standard tier, and OpenAI advises 15 minutes."""


def refuse_unflexible(
    steps: Iterable[tuple[str, str, str, str]],
    registry: Registry,
    can_flex: Callable[[str], bool],
) -> None:
    """``run --flex`` (or ``api.realtime.service_tier: flex``) needs every LLM step's
    provider to offer the flex tier (``can_flex(provider)``: the catalog's ``flex``
    capability) and its model to have a known flex price. ``steps`` are ``(step, provider,
    model, price provider)``; the first that does not is refused (``UsageError`` naming the
    step, the provider and the model) before anything is sent."""
    probe = TokenCounts(1000, 1000, 0)
    for step, provider, model, price_provider in steps:
        if not can_flex(provider):
            raise UsageError(
                f"--flex: step {step!r} uses provider {provider!r}, which has no flex tier; "
                "run without --flex (or set api.realtime.service_tier: standard), or use a "
                "provider that offers flex (openai)"
            )
        if cost_usd(registry, price_provider, model, probe, tier="flex") is None:
            raise UsageError(
                f"--flex: step {step!r} uses {provider}/{model}, which has no known flex price "
                "(the vendor offers flex on some models only; `octopipe models` lists the flex "
                "prices); choose a model with a flex price, or supply one in a price file"
            )


def refuse_unpriced_cap(
    steps: Iterable[tuple[str, str, str, str]],
    registry: Registry,
    mode: Mode,
    cost_cap_usd: float | None,
    *,
    tier: Tier | None = None,
) -> None:
    """A cost cap holds only if every LLM step's calls can be priced. ``steps`` are
    ``(step, provider, model, price provider)``; with a cap set, a step whose model has no
    known ``mode`` price is refused (``UsageError`` naming the step and the model) before
    anything is sent. Without a cap, unknown prices are shown as unknown."""
    if cost_cap_usd is None:
        return
    probe = TokenCounts(1000, 1000, 0)
    for step, provider, model, price_provider in steps:
        if cost_usd(registry, price_provider, model, probe, mode, tier=tier) is None:
            raise UsageError(
                f"--max-cost {format_usd(cost_cap_usd)} cannot be held: step {step!r} uses "
                f"{provider}/{model}, which has no known {tier or mode} price (`octopipe models` "
                "lists the priced ones); supply its price in ~/.config/octopipe/prices.yaml "
                "or in a price file the pipeline names under `prices:`, choose a priced "
                "model, or run without a cost cap"
            )
