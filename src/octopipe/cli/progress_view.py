"""The progress display of ``octopipe run``: a live table on a terminal, log lines otherwise."""

from __future__ import annotations

import time
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from octopipe.core.amounts import format_usd
from octopipe.engine.progress import ProgressSnapshot

LINE_EVERY_S = 15.0


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def render(snapshot: ProgressSnapshot) -> Table:
    cost = _cost(snapshot) or "-"
    table = Table(
        title=f"{_eta(snapshot.elapsed_s)} elapsed, cost so far {cost}{_batches(snapshot)}",
        title_justify="left",
        box=None,
        pad_edge=False,
    )
    for column in (
        "step",
        "done/total",
        "valid",
        "retrying",
        "failed",
        "in flight",
        "rate/s",
        "ETA",
    ):
        table.add_column(column, justify="left" if column == "step" else "right")
    for step in snapshot.steps:
        table.add_row(
            step.name,
            f"{step.done:,}/{step.total:,}",
            f"{step.valid:,}",
            f"{step.retrying:,}",
            f"{step.failed:,}",
            f"{step.in_flight:,}",
            f"{step.rate_per_s:,.1f}",
            _eta(step.eta_s),
        )
    return table


def one_line(snapshot: ProgressSnapshot) -> str:
    parts = [
        f"{s.name} {s.done:,}/{s.total:,} ({s.valid:,} valid, {s.failed:,} failed, "
        f"{s.rate_per_s:,.1f}/s, ETA {_eta(s.eta_s)})"
        for s in snapshot.steps
    ]
    cost = _cost(snapshot)
    return "; ".join(parts) + (f"; cost {cost}" if cost else "") + _batches(snapshot)


def _cost(snapshot: ProgressSnapshot) -> str:
    """``$0.42``; ``unknown`` when no call had a price; ``$0.42 + unknown`` when some had."""
    if snapshot.cost_usd is None:
        return ""
    if not snapshot.unknown_cost_calls:
        return format_usd(snapshot.cost_usd)
    return "unknown" if not snapshot.cost_usd else f"{format_usd(snapshot.cost_usd)} + unknown"


def _batches(snapshot: ProgressSnapshot) -> str:
    if not snapshot.batches:
        return ""
    return "; open batches: " + ", ".join(f"{n} {s}" for s, n in sorted(snapshot.batches.items()))


class ProgressView:
    """Callable the runner reports to; use as a context manager around the run."""

    def __init__(self, stream: TextIO, live: bool) -> None:
        self.stream = stream
        self.live = Live(console=Console(file=stream), auto_refresh=False) if live else None
        self._last_line = 0.0

    def __call__(self, snapshot: ProgressSnapshot) -> None:
        if self.live is not None:
            self.live.update(render(snapshot), refresh=True)
            return
        now = time.monotonic()
        if now - self._last_line >= LINE_EVERY_S:
            self._last_line = now
            self.stream.write(f"[PROGRESS] {one_line(snapshot)}\n")
            self.stream.flush()

    def alerts(self) -> AlertEcho:
        """A stream for the run log that shows, above the live table, only the lines that
        need attention (provider errors, pauses, stops, errors)."""
        return AlertEcho(self)

    def print_line(self, text: str) -> None:
        if self.live is not None:
            self.live.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def __enter__(self) -> ProgressView:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live is not None:
            self.live.stop()


ALERT_TAGS = ("[PROVIDER]", "[PAUSE]", "[PAUSED]", "[STOP]", "[ERROR]", "[FAILED]", "[KILLED]")


class AlertEcho:
    """The run log's echo on a terminal: passes on the lines tagged ``ALERT_TAGS``."""

    def __init__(self, view: ProgressView) -> None:
        self.view = view

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if any(tag in line for tag in ALERT_TAGS):
                self.view.print_line(line)
        return len(text)

    def flush(self) -> None:
        pass
