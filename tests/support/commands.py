"""One example of every command (and of every field set), shared by the codec, store and
engine tests (``from support.commands import EXAMPLES``)."""

from __future__ import annotations

from octopipe.core.commands import (
    Command,
    Kill,
    Pause,
    Rename,
    Repair,
    Retry,
    SwitchMode,
    UpdateSettings,
)

EXAMPLES: list[Command] = [
    Pause(),
    Pause("cost check"),
    Kill(),
    Retry(),
    Retry(step_idx=2, stage="rules", unit_ids=("a", "b")),
    Retry(unit_ids=()),
    Repair(),
    Rename("Nice name"),
    SwitchMode("batch"),
    SwitchMode("realtime"),
    UpdateSettings(),
    UpdateSettings("openai", "gpt-x", {"max_cost_usd": 2.5, "answers": None, "tags": [1, 2]}),
]
