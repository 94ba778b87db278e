"""What ``status`` and ``info`` show of a run's post-processing (read-only, kept light: no
pipeline parsing imported).

The latest ledger row of each action (``store/post_runs.py``) with its state (``ok``,
``failed``, ``skipped``, ``running``, or ``interrupted`` when it says running and no runner is
alive) and whether it is *stale*: computed from results the ledger has moved past since, or an
output that is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from octopipe.engine.paths import RunPaths
from octopipe.store import RunReader


@dataclass(frozen=True)
class PostState:
    action: str
    name: str
    kind: str
    state: str  # ok, failed, skipped, running, interrupted
    stale: bool  # the ledger's results moved on since (or the output is gone)
    output: str | None
    exit_code: int | None
    detail: str | None
    finished_at: str | None
    command: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "stale": self.stale,
            "output": self.output,
            "exit_code": self.exit_code,
            "detail": self.detail,
            "finished_at": self.finished_at,
            "command": self.command,
        }


def post_view(ledger: RunReader, paths: RunPaths, *, live: bool) -> list[PostState]:
    """The latest state of every post-processing action of a run (read-only)."""
    version = ledger.results_version()
    states = []
    for row in ledger.post_runs():
        state = "interrupted" if row.outcome == "running" and not live else row.outcome
        gone = row.outcome == "ok" and row.output is not None
        gone = gone and not (paths.root / row.output).exists()  # type: ignore[operator]
        states.append(
            PostState(
                row.action,
                row.name,
                row.kind,
                state,
                row.results_version != version or gone,
                row.output,
                row.exit_code,
                row.detail,
                row.finished_at,
                row.command,
            )
        )
    return states


__all__ = ["PostState", "post_view"]
