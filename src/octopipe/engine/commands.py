"""Changes to a run, applied by its one writer.

``apply(ledger, kind, args)`` is called either by the live runner (for a command another
process queued) or by ``control.change_run`` after taking the run's lock itself. Either way the
change happens in the process that holds the lock, in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from octopipe.core.states import CommandEvent
from octopipe.store import RunStore

KINDS = ("pause", "kill", "retry", "repair", "rename")
RESULT_KINDS = ("retry", "repair")  # kinds that change what the exports show


@dataclass(frozen=True)
class CommandOutcome:
    event: CommandEvent
    message: str
    stop: str | None = None  # a runner applying this command stops with this reason


def apply(ledger: RunStore, kind: str, args: dict[str, Any] | None) -> CommandOutcome:
    args = args or {}
    match kind:
        case "pause":
            return CommandOutcome(
                CommandEvent.APPLY, "pausing", stop=args.get("reason") or "paused by request"
            )
        case "kill":
            return CommandOutcome(CommandEvent.APPLY, "killing", stop="killed by request")
        case "retry":
            step = args.get("step_idx")
            count = ledger.requeue_failed(
                step_idx=step, stage=args.get("stage"), unit_ids=args.get("unit_ids")
            )
            return CommandOutcome(CommandEvent.APPLY, f"requeued {count} failed unit(s)")
        case "repair":
            done = ledger.repair()
            message = f"requeued {done.missing} missing unit(s)"
            if done.recounted:
                message += (
                    f"; raised the attempt counter of {done.recounted} unit(s) to match "
                    "their stored attempts"
                )
            return CommandOutcome(CommandEvent.APPLY, message)
        case "rename":
            ledger.update_run(display_name=str(args["display_name"]))
            return CommandOutcome(CommandEvent.APPLY, f"renamed to {args['display_name']!r}")
    return CommandOutcome(CommandEvent.REJECT, f"unknown command {kind!r}")
