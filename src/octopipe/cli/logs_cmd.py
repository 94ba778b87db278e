"""``logs`` and ``watch``: following a run from another terminal.

``watch`` re-attaches to a run driven by another process (a ``run --detach``): it prints the
run log as it grows, with a status summary at least every ``SUMMARY_EVERY_S``, until the runner
exits. A run whose runner died (*detached*) is resumed in the foreground instead, as
``octopipe run RUN`` would.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import click

from octopipe.cli.options import runs_dir_option, runs_dir_or_default
from octopipe.engine.paths import RunPaths, resolve_run
from octopipe.engine.queries import runner_live
from octopipe.errors import EXIT_FAILURE, EXIT_OK

FOLLOW_POLL_S = 0.25


@click.command()
@click.argument("run", metavar="RUN")
@runs_dir_option
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Keep printing new lines until the runner exits (or Ctrl+C).",
)
@click.option(
    "--lines",
    "-n",
    "count",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="How many of the last lines to print first.",
)
def logs(run: str, runs_dir: Path | None, follow: bool, count: int) -> int:
    """Print the end of a run's log (run.log); with -f, follow it while the run is live."""
    paths = resolve_run(run, runs_dir_or_default(runs_dir))
    lines, offset = tail(paths.log, count)
    for line in lines:
        click.echo(line)
    if not follow:
        if not paths.log.exists():
            click.echo(f"{paths.name}: no log yet (the run has not started)", err=True)
        return EXIT_OK
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C is how a follow ends
        follow_log(paths, offset)
    return EXIT_OK


def tail(path: Path, count: int, block: int = 1 << 16) -> tuple[list[str], int]:
    """The last ``count`` complete lines of a file and the offset after them."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return [], 0
    with handle:
        end = handle.seek(0, os.SEEK_END)
        data = b""
        position = end
        while position > 0 and data.count(b"\n") <= count:
            step = min(block, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    complete = data[: data.rfind(b"\n") + 1] if b"\n" in data else b""
    offset = end - (len(data) - len(complete))
    lines = complete.decode("utf-8", "replace").splitlines()
    return (lines[-count:] if count else []), offset


def follow_log(
    paths: RunPaths, offset: int, every: Callable[[], None] | None = None, every_s: float = 0
) -> None:
    """Print new log lines until the runner lets go of the lock; call ``every`` at least every
    ``every_s`` seconds while waiting (``watch``'s status summaries)."""
    pending = b""
    last = time.monotonic()
    while True:
        live = runner_live(paths)
        if every is not None and time.monotonic() - last >= every_s:
            every()
            last = time.monotonic()
        try:
            with paths.log.open("rb") as handle:
                if handle.seek(0, os.SEEK_END) < offset:  # the log was replaced: start over
                    offset = 0
                handle.seek(offset)
                chunk = handle.read()
        except FileNotFoundError:
            chunk = b""
        offset += len(chunk)
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            click.echo(line.decode("utf-8", "replace"))
        if not live:
            if pending:
                click.echo(pending.decode("utf-8", "replace"))
            return
        time.sleep(FOLLOW_POLL_S)


SUMMARY_EVERY_S = 60.0


@click.command()
@click.argument("run", metavar="RUN")
@runs_dir_option
@click.option(
    "--every",
    "every_s",
    type=click.FloatRange(min=1),
    default=SUMMARY_EVERY_S,
    show_default=True,
    help="Seconds between status summaries while following.",
)
@click.pass_context
def watch(ctx: click.Context, run: str, runs_dir: Path | None, every_s: float) -> int:
    """Follow a run driven by another process (e.g. `run --detach`) until it stops; resume a
    run whose runner died (shown as detached). A paused run is only shown: `run` resumes it."""
    from octopipe.cli.status_cmds import _print_status, cost_text
    from octopipe.engine.queries import run_status

    paths = resolve_run(run, runs_dir_or_default(runs_dir))
    view = run_status(paths)
    if not view.live:
        if view.status == "detached":
            click.echo(f"{paths.name}: its runner died; resuming it here", err=True)
            from octopipe.cli.run_cmds import run as run_command

            return int(
                ctx.invoke(run_command, target=str(paths.root), runs_dir=runs_dir, yes=True) or 0
            )
        _print_status(view)
        if view.status in ("paused", "pending"):
            click.echo(f"resume it with `octopipe run {paths.name}`", err=True)
        return EXIT_OK if view.status.startswith("complete") else EXIT_FAILURE

    def summary() -> None:
        current = run_status(paths)
        steps = "; ".join(
            f"{s.name} {s.valid:,} valid, {s.retrying:,} retrying, {s.failed:,} failed, "
            f"{s.in_flight:,} in flight"
            for s in current.steps
        )
        batches = ", ".join(f"{n} {state}" for state, n in current.batch_counts.items())
        click.echo(
            f"[WATCH] {current.status}: {steps}; "
            f"cost {cost_text(current.known_cost_usd, current.unknown_cost_attempts)}"
            + (f"; batches {batches}" if batches else "")
        )

    lines, offset = tail(paths.log, 10)
    for line in lines:
        click.echo(line)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C stops watching, not the run
        follow_log(paths, offset, summary, every_s)
    final = run_status(paths)
    _print_status(final)
    return EXIT_OK if final.status.startswith("complete") else EXIT_FAILURE
