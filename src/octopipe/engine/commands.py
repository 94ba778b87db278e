"""Changes to a run, applied by its one writer.

The commands themselves are ``core.commands`` (re-exported here: this is where the CLI and
the TUI take them from). ``apply(ledger, command)`` makes the change, in the process that
holds the run's lock: the live runner, for a command another process queued
(:func:`apply_queued`), or ``control.change_run`` after taking the lock itself. The ``match``
is exhaustive: a new command does not type-check until it is handled here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, assert_never

from octopipe.core.commands import (
    CHANGES_RESULTS,
    COMMANDS,
    QUEUEABLE,
    STOPPING,
    Command,
    Kill,
    Pause,
    Rename,
    Repair,
    Retry,
    SwitchMode,
    UpdateSettings,
)
from octopipe.core.states import CommandEvent
from octopipe.store import RunStore
from octopipe.store.records import CommandRow

__all__ = [
    "CHANGES_RESULTS",
    "COMMANDS",
    "QUEUEABLE",
    "STOPPING",
    "Command",
    "CommandOutcome",
    "Kill",
    "Pause",
    "Rename",
    "Repair",
    "Retry",
    "SwitchMode",
    "UpdateSettings",
    "apply",
    "apply_queued",
]


@dataclass(frozen=True)
class CommandOutcome:
    event: CommandEvent
    message: str
    stop: str | None = None  # a runner applying this command stops with this reason


def apply(ledger: RunStore, command: Command) -> CommandOutcome:
    """Make the change ``command`` asks for; the caller holds the run's lock."""
    match command:
        case Pause(reason=reason):
            return CommandOutcome(CommandEvent.APPLY, "pausing", stop=reason or "paused by request")
        case Kill():
            return CommandOutcome(CommandEvent.APPLY, "killing", stop="killed by request")
        case Retry(step_idx=step_idx, stage=stage, unit_ids=unit_ids):
            count = ledger.requeue_failed(step_idx=step_idx, stage=stage, unit_ids=unit_ids)
            return CommandOutcome(CommandEvent.APPLY, f"requeued {count} failed unit(s)")
        case Repair():
            done = ledger.repair()
            message = f"requeued {done.missing} missing unit(s)"
            if done.recounted:
                message += (
                    f"; raised the attempt counter of {done.recounted} unit(s) to match "
                    "their stored attempts"
                )
            if done.totals:
                message += "; rebuilt the LLM totals row from the attempts"
            return CommandOutcome(CommandEvent.APPLY, message)
        case Rename(display_name=name):
            ledger.update_run(display_name=name)
            return CommandOutcome(CommandEvent.APPLY, f"renamed to {name!r}")
        case SwitchMode(mode=mode):
            old = ledger.run_info().mode
            ledger.update_run(mode=mode)
            if mode == old:
                return CommandOutcome(CommandEvent.APPLY, f"mode stays {mode}")
            ledger.log_event("info", "MODE", f"mode {old} -> {mode}")
            return CommandOutcome(CommandEvent.APPLY, f"{old} -> {mode}")
        case UpdateSettings(provider=provider, model=model, options=options):
            named = {k: v for k, v in (("provider", provider), ("model", model)) if v is not None}
            ledger.update_run(options={**options, **named}, provider=provider, model=model)
            if named:
                ledger.log_event("info", "SETTINGS", pairs(named), named)
            return CommandOutcome(CommandEvent.APPLY, pairs({**options, **named}))
        case _:
            assert_never(command)


def apply_queued(ledger: RunStore, row: CommandRow) -> CommandOutcome:
    """What the live runner does with a queued command: apply it, or reject one that cannot
    be read back (saying why) or that waits for the run to be paused."""
    if row.command is None:
        return CommandOutcome(CommandEvent.REJECT, row.problem or f"unknown command {row.kind!r}")
    if not isinstance(row.command, QUEUEABLE):
        return CommandOutcome(
            CommandEvent.REJECT, f"{row.kind} is applied only while no runner is live"
        )
    return apply(ledger, row.command)


def pairs(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items()))
