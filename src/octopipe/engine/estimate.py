"""The pre-run estimate: units, LLM calls per step, tokens and cost, before anything is spent.

Calls per step come from the static check (fan-out projected from the trial unit), token sizes
from rendering the first units' prompts, prices from the registry through ``core.costs`` (a
model the registry does not price shows as *unknown*, never as a guess).
"""

from __future__ import annotations

from dataclasses import dataclass

from octopipe.core.amounts import format_usd
from octopipe.core.checker import CheckReport
from octopipe.core.config import Pipeline
from octopipe.core.config_models import LLMStep
from octopipe.core.costs import Estimate, Mode, StepLoad, Tier, estimate_run
from octopipe.core.trial import sample_loads
from octopipe.engine.prices import price_registry


@dataclass(frozen=True)
class RunEstimate:
    units: int | None
    estimate: Estimate
    retry_note: str

    @property
    def _priced_as(self) -> str:
        tier = self.estimate.tier
        return self.estimate.mode if tier is None else f"{self.estimate.mode}, {tier} prices"

    def lines(self) -> list[str]:
        out = [f"{self.units:,} units" if self.units is not None else "units: unknown"]
        for line in self.estimate.per_step:
            out.append(
                f"  {line.step}: {line.calls:,} calls to {line.provider}/{line.model}, "
                f"~{line.input_tokens:,} in + ~{line.output_tokens:,} out tokens, "
                f"{format_usd(line.cost_usd)}"
            )
        total = self.estimate.total_usd
        known = self.estimate.known_usd
        if total is not None:
            label = format_usd(total)
        elif known:
            label = f"{format_usd(known)} + unknown (the price of {', '.join(self.estimate.unknown_steps)} is unknown)"
        else:
            label = "unknown (no price is known for these models)"
        out.append(f"estimated cost ({self._priced_as}, first attempts): {label}{self.retry_note}")
        return out


def estimate_pipeline(
    pipeline: Pipeline,
    report: CheckReport,
    mode: Mode,
    *,
    provider: str | None = None,
    model: str | None = None,
    flex: bool | None = None,
) -> RunEstimate:
    """Units, calls, tokens and cost of a run of ``pipeline`` in ``mode``. A realtime run at
    the flex tier (``flex``, or ``None`` and ``api.realtime.service_tier: flex``) is priced at
    flex rates; otherwise realtime at standard rates and batch at batch rates."""
    registry = price_registry(pipeline)
    loads = sample_loads(pipeline)
    calls = {s.name: s.calls for s in report.steps}
    api = pipeline.config.api
    steps: list[StepLoad] = []
    for step in pipeline.steps:
        if not isinstance(step, LLMStep):
            continue
        resolved = registry.resolve(
            provider, model, step.provider, step.model, api.provider, api.model
        )
        prompt_tokens, answer_tokens = loads.get(step.name, (0, 0))
        steps.append(
            StepLoad(
                step.name,
                resolved.provider,
                resolved.model,
                calls.get(step.name) or 0,
                prompt_tokens,
                answer_tokens,
            )
        )
    attempts = pipeline.config.processing.validation_retry.max_attempts
    note = (
        f"; retries can add up to {attempts - 1}x for units that fail validation"
        if attempts > 1 and steps
        else ""
    )
    tier = flex_tier(pipeline, mode, flex)
    return RunEstimate(report.units, estimate_run(registry, steps, mode, tier=tier), note)


def flex_tier(pipeline: Pipeline, mode: Mode, flex: bool | None) -> Tier | None:
    """``"flex"`` when a run in ``mode`` goes to the flex tier, else ``None`` (the mode's own
    tier). ``flex`` ``None``: what the pipeline's config says."""
    if mode != "realtime":
        return None
    wanted = flex if flex is not None else pipeline.config.api.realtime.service_tier == "flex"
    return "flex" if wanted else None
