"""``?``: the keys of the screen it was opened from, from that screen's own bindings."""

from __future__ import annotations

from rich.text import Text
from textual.screen import Screen

from octopipe.tui.screens.modals import TextScreen

NOTES = {
    "DashboardScreen": "Every run under the runs folder; refreshed every 2 s. Enter opens a run.",
    "RunDetailScreen": (
        "The run's steps as a funnel, its batches, stats, units (paged from the ledger; F "
        "state filter, S stage filter, / id prefix search, ←/→ step) and its log."
    ),
    "UnitScreen": "One unit: input, rendered prompts, every attempt with its raw answer.",
}


def help_text(screen: Screen[object]) -> Text:
    out = Text()
    out.append(NOTES.get(type(screen).__name__, "") + "\n\n")
    seen = set()
    for binding in [*screen.BINDINGS, *screen.app.BINDINGS]:
        if isinstance(binding, tuple):
            continue
        keys = binding.key_display or binding.key
        if (keys, binding.description) in seen:
            continue
        seen.add((keys, binding.description))
        out.append(f"{keys:>14}", style="bold")
        out.append(f"  {binding.description or binding.action}\n")
    out.append("\nCtrl+P opens the command palette.", style="dim")
    return out


class HelpScreen(TextScreen):
    def __init__(self, screen: Screen[object]) -> None:
        super().__init__(f"Keys: {type(screen).__name__.removesuffix('Screen')}", help_text(screen))
