"""The pipeline as a funnel of step boxes: per step what came in, what is valid, what failed
(by stage), what is retrying, in flight or waiting; loops and fan-outs marked; the selected
step highlighted."""

from __future__ import annotations

from typing import Any

from rich.columns import Columns
from rich.console import RenderableType
from rich.panel import Panel
from rich.text import Text

SCOPE_MARK = {"chunk": "LLM", "expression": "expr", "fan_out": "fan-out ⑂"}


def step_box(step: Any, stages: dict[str, int], batches: dict[str, int], selected: bool) -> Panel:
    body = Text()
    total = step.total
    body.append(f"{step.valid:,}", style="bold green")
    body.append(f" / {total:,} valid\n")
    if step.failed:
        body.append(f"✗ {step.failed:,} failed\n", style="bold red")
        for stage, count in sorted(stages.items()):
            body.append(f"   {count:,} at {stage}\n", style="red")
    if step.retrying:
        body.append(f"↻ {step.retrying:,} retrying\n", style="yellow")
    if step.in_flight:
        body.append(f"⏳ {step.in_flight:,} in flight\n", style="cyan")
    if step.pending:
        body.append(f"… {step.pending:,} pending\n", style="dim")
    if step.max_iterations:
        body.append(f"↻ {step.max_iterations:,} hit max iterations\n", style="yellow")
    if batches:
        body.append("📤 " + ", ".join(f"{n} {s}" for s, n in sorted(batches.items())) + "\n")
    if total and step.valid + step.failed == total:
        body.append("🏁 done", style="green")
    title = Text(f"{step.name} · {SCOPE_MARK.get(step.scope, step.scope)}")
    return Panel(
        body,
        title=title,
        border_style="bold magenta" if selected else "blue",
        width=30,
    )


def funnel(
    steps: list[Any],
    stages: dict[str, dict[str, int]],
    batches: dict[str, dict[str, int]],
    selected: int,
) -> RenderableType:
    boxes: list[RenderableType] = []
    for index, step in enumerate(steps):
        if index:
            boxes.append(Text("\n→", style="bold"))
        boxes.append(
            step_box(step, stages.get(step.name, {}), batches.get(step.name, {}), index == selected)
        )
    return Columns(boxes, padding=(0, 0))
