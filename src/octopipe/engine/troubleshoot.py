"""Troubleshoot: one model call that reads a run's top errors, sample failed answers and the
pipeline's config and says what to change; the answer comes back with its cost (``None``:
unknown). The model defaults to the cheapest one a configured provider (API key set) has a
price for; with no key set, the local emulator (``fake``), which answers but bills nothing.

The call is one realtime request through the provider catalog (``providers_setup.one_call``);
nothing is written to the run's ledger.
"""

from __future__ import annotations

from dataclasses import dataclass

from octopipe.core.costs import cost_usd
from octopipe.core.registry import load_registry
from octopipe.engine.browse import UnitDetail, unit_detail
from octopipe.engine.paths import RunPaths
from octopipe.engine.providers_setup import configured_providers, one_call
from octopipe.engine.report import RunReport, run_report
from octopipe.errors import UsageError
from octopipe.providers.base import LLMRequest

CONFIG_CHARS = 12_000
ANSWER_CHARS = 1_500
SAMPLES = 2
FAKE = "fake"


@dataclass(frozen=True)
class Troubleshooting:
    provider: str
    model: str
    prompt: str
    answer: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None  # None: no price known for this model

    @property
    def cost_text(self) -> str:
        return "unknown" if self.cost_usd is None else f"${self.cost_usd:.6f}"


def cheapest_model(providers: tuple[str, ...]) -> tuple[str, str]:
    """``(provider, model)``: the lowest (output, input) standard rate among ``providers``'
    models; the emulator's default model when no provider is configured."""
    registry = load_registry()
    priced = []
    for provider in providers:
        for info in registry.models(provider):
            rates = registry.rates(provider, info.name, "standard")
            if rates is not None:
                priced.append((rates.base.output, rates.base.input, provider, info.name))
    if priced:
        _, _, provider, model = min(priced)
        return provider, model
    return FAKE, registry.default_model(FAKE) or "gpt-6-luna"


def troubleshoot_prompt(paths: RunPaths, report: RunReport, top: int = 5) -> str:
    """What the model is told: each step's top error groups with counts, the raw answers of
    a few sample units, and the pipeline's config."""
    lines = [
        "You are helping debug an LLM batch pipeline run by octopipe. Below are the most",
        "common failures per step, sample raw answers that failed, and the pipeline config.",
        "Say in a few points what most likely causes each failure and what to change",
        "(prompt template, schema, validation rules or config), most impactful first.",
        "",
        f"# run {report.name} (pipeline {report.pipeline})",
    ]
    for step in report.steps:
        if not step.errors:
            continue
        lines.append(f"\n## step {step.name}: {step.failed} failed, {step.retrying} retrying")
        for error in step.errors[:top]:
            lines.append(f"- {error.count} x [{error.stage or '?'}] {error.message}")
            for unit_id in error.samples[:SAMPLES]:
                detail = unit_detail(paths, unit_id)
                raw = _last_answer(detail, step.name) if detail is not None else None
                if raw is not None:
                    lines.append(f"  sample {unit_id} answered: {raw[:ANSWER_CHARS]}")
    if len(lines) == 6:
        lines.append("\n(no failures recorded)")
    config = next((p for p in sorted(paths.config_dir.glob("config.y*ml"))), None)
    if config is not None:
        lines += ["", "# config", config.read_text(encoding="utf-8")[:CONFIG_CHARS]]
    return "\n".join(lines)


def _last_answer(detail: UnitDetail, step: str) -> str | None:
    for at_step in reversed(detail.steps):
        if at_step.step != step:
            continue
        for attempt in reversed(at_step.attempts):
            if attempt.response is not None:
                return attempt.response
    return None


def troubleshoot(
    paths: RunPaths, *, provider: str | None = None, model: str | None = None
) -> Troubleshooting:
    """Ask ``provider``/``model`` (default: the cheapest configured) about the run's failures."""
    if model is not None and provider is None:
        raise UsageError("troubleshoot: name the provider of the model too")
    if provider is None:
        provider, model = cheapest_model(configured_providers())
    if model is None:
        model = load_registry().default_model(provider.split(":", 1)[0])
        if model is None:
            raise UsageError(f"troubleshoot: provider {provider} has no default model; name one")
    report = run_report(paths)
    prompt = troubleshoot_prompt(paths, report)
    request = LLMRequest(
        unit_id="troubleshoot",
        step="troubleshoot",
        model=model,
        prompt=prompt,
        structured_output=False,
        max_tokens=2048,
    )
    response = one_call(provider, request)
    cost = cost_usd(load_registry(), provider.split(":", 1)[0], model, response.usage)
    return Troubleshooting(
        provider,
        model,
        prompt,
        response.text,
        response.usage.input_tokens,
        response.usage.output_tokens,
        cost,
    )
