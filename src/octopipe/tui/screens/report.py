"""Text views of ``engine.report`` (G) and ``engine.compare`` (C): the funnel per step,
failures by stage, error groups, usage of first attempts vs retries; runs side by side.
Values from the ledger are shown as plain ``Text`` (never markup)."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from octopipe.tui.format import cost_text, duration


def money(cost: Any) -> str:
    return cost_text(cost.known_usd, cost.unknown)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def report_text(report: Any) -> Text:
    out = Text()
    out.append(f"{report.name} ({report.pipeline}): {report.status}", style="bold")
    out.append(f"  mode {report.mode}  elapsed {duration(report.elapsed_s)}\n\n")
    for step in report.steps:
        stages = ", ".join(f"{k} {v}" for k, v in sorted(step.failed_by_stage.items()))
        out.append(f"{step.name}", style="bold")
        out.append(
            f" ({step.scope}): input {step.input:,}, valid {step.valid:,} "
            f"(yield {pct(step.yield_)}), failed {step.failed:,}"
            + (f" [{stages}]" if stages else "")
            + f", retrying {step.retrying:,}, pending {step.pending:,}, "
            f"in flight {step.in_flight:,}\n"
        )
        if step.is_llm:
            out.append(
                f"    calls {step.usage.calls:,}; first attempts {money(step.first.cost)}, "
                f"retries {money(step.retries.usage.cost)} ({step.retries.units:,} units); "
                f"first-attempt pass rate {pct(step.first_attempt_pass_rate)}\n"
            )
        for error in step.errors:
            samples = ", ".join(error.samples)
            out.append(
                f"    {error.count:,} × [{error.stage or '?'}] {error.message}"
                + (f"  e.g. {samples}" if samples else "")
                + "\n"
            )
    usage = report.usage
    out.append("\n")
    out.append(
        f"tokens {usage.input_tokens:,} in / {usage.output_tokens:,} out; cost {money(usage.cost)}"
        f" (first attempts {money(report.first.cost)}, retries "
        f"{money(report.retries.usage.cost)}); per valid unit "
        f"{'-' if report.cost_per_valid_unit is None else f'${report.cost_per_valid_unit:.6f}'}"
        "\n"
    )
    return out


def comparison_text(comparison: Any) -> Text:
    data = comparison.to_dict()
    out = Text()
    for run in data["runs"]:
        cost = run["cost"]
        out.append(f"{run['run']}", style="bold")
        out.append(
            f" ({run['pipeline']}, {run['mode']}, {run['status']}): units {run['units']:,}, "
            f"valid {run['valid']:,}, failed {run['failed']:,}; cost "
            f"{cost_text(cost['known_usd'] or 0.0, cost['unknown_cost_calls'])}; retries "
            f"{run['retries']['units']:,} units\n"
        )
        for step in data["steps"]:
            out.append(
                f"    {step}: yield {pct(run['yield'].get(step))}, pass rate "
                f"{pct(run['pass_rate'].get(step))}\n"
            )
    return out
