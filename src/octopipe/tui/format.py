"""Plain-text cells shared by the screens and ``tui --dump`` (no Textual import here, so the
dump runs without a terminal and tests can compare the two)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from octopipe.core.amounts import format_usd
from octopipe.engine.browse import DashboardRow

COLUMNS = (
    ("run", "Run"),
    ("status", "Status"),
    ("progress", "Progress"),
    ("units", "Units"),
    ("valid", "Valid"),
    ("failed", "Failed (val/hard)"),
    ("cost", "Cost"),
    ("eta", "ETA"),
    ("mode", "Mode"),
    ("duration", "Duration"),
    ("started", "Started"),
)

ICONS = {
    "running": "▶",
    "detached": "⚠",
    "pending": "…",
    "paused": "⏸",
    "complete": "✓",
    "complete_with_failures": "✓",
    "failed": "✗",
    "killed": "☠",
    "unreadable": "?",
}


def cost_text(known_usd: float, unknown_calls: int) -> str:
    """``$0.0018``; ``unknown`` when no call had a price; ``$0.0018 + unknown`` when some did."""
    if not unknown_calls:
        return format_usd(known_usd)
    if not known_usd:
        return "unknown"
    return f"{format_usd(known_usd)} + unknown"


def totals_cost_text(known_usd: float, unknown_runs: int) -> str:
    """The dashboard's total cost: the known part, and how many runs have calls without a
    price (``$0.0027 + unknown (3 runs unpriced)``)."""
    if not unknown_runs:
        return format_usd(known_usd)
    runs = "1 run" if unknown_runs == 1 else f"{unknown_runs} runs"
    return f"{format_usd(known_usd)} + unknown ({runs} unpriced)"


def status_text(status: str, reason: str | None) -> str:
    label = status.replace("_", " ")
    if status == "paused" and reason:
        return f"paused: {reason}"
    if status == "detached":
        return "detached (no runner)"
    if status == "unreadable" and reason:
        return f"unreadable: {reason}"
    return label


def bar(progress: float, width: int = 10) -> str:
    filled = round(max(0.0, min(1.0, progress)) * width)
    return "█" * filled + "░" * (width - filled) + f" {progress * 100:3.0f}%"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def started(text: str | None) -> str:
    if not text:
        return "-"
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text[:16]
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def tokens(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1_000:.0f}k"
    return f"{n:,}"


def row_cells(row: DashboardRow, now: datetime | None = None) -> dict[str, str]:
    """The dashboard's cells for one run, by column key."""
    view = row.view
    name = view.display_name if view.display_name != view.name else view.name
    if view.display_name != view.name:
        name = f"{view.display_name} ({view.name})"
    return {
        "run": f"{ICONS.get(view.status, ' ')} {name}" + (" [archived]" if view.archived else ""),
        "status": status_text(view.status, view.reason),
        "progress": bar(view.progress),
        "units": f"{view.units:,}",
        "valid": f"{view.valid:,}",
        "failed": f"{view.failed:,} ({row.failed_validation:,}/{row.failed_hard:,})",
        "cost": cost_text(view.known_cost_usd, view.unknown_cost_attempts),
        "eta": duration(row.eta_s(now)) if row.eta_s(now) is not None else "-",
        "mode": view.mode,
        "duration": duration(row.elapsed_s(now)),
        "started": started(row.started_at or view.created_at),
    }


def funnel_lines(row: DashboardRow, stages: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """Per step: name, input, valid, failed by stage, retrying, in flight, pending."""
    out = []
    for step in row.view.steps:
        out.append(
            {
                "step": step.name,
                "scope": step.scope,
                "input": step.total,
                "valid": step.valid,
                "failed": step.failed,
                "failed_by_stage": stages.get(step.name, {}),
                "retrying": step.retrying,
                "in_flight": step.in_flight,
                "pending": step.pending,
                "max_iterations": step.max_iterations,
            }
        )
    return out
