"""``report`` and ``compare``: read-only views of finished (or running) runs.

Both open ledgers read-only and never take a run lock, so they may be run while a runner
works. Output: the terminal view (tables and small bar charts), ``--markdown`` (to paste into
a note or an issue) or ``--json`` (every figure, for scripts).
"""

from __future__ import annotations

from pathlib import Path

import click

from octopipe.cli.options import runs_dir_option, runs_dir_or_default
from octopipe.cli.output import console, print_json
from octopipe.engine.compare import compare_runs
from octopipe.engine.paths import resolve_run
from octopipe.engine.report import TOP_ERRORS, run_report
from octopipe.errors import EXIT_OK, UsageError

_formats = [
    click.option("--json", "as_json", is_flag=True, help="Print every figure as JSON."),
    click.option("--markdown", "as_markdown", is_flag=True, help="Print as Markdown."),
]


def _with_formats(command: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(_formats):
        command = option(command)
    return command


def _check_formats(as_json: bool, as_markdown: bool) -> None:
    if as_json and as_markdown:
        raise UsageError("--json and --markdown cannot be used together: choose one")


@click.command()
@click.argument("run_name", metavar="RUN")
@runs_dir_option
@_with_formats
@click.option(
    "--failures-by",
    "failures_by",
    metavar="FIELD",
    help="Group each step's units by this field of their record (an item field or one an "
    "earlier step produced): which values fail most.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=TOP_ERRORS,
    show_default=True,
    help="How many error groups to show per step.",
)
def report(
    run_name: str,
    runs_dir: Path | None,
    as_json: bool,
    as_markdown: bool,
    failures_by: str | None,
    top: int,
) -> int:
    """What a run did, per step: the funnel (input, valid, failed by stage, retrying, in
    flight, yield, pass rate), fan-out, retries and their tokens and cost, the top errors
    (numbers, quoted values and ids normalised) with sample units, loop-limit hits; for the
    run, tokens and cost of first attempts vs retries, cost per valid unit, duration and
    throughput. A cost with no known price is shown as unknown, never $0."""
    _check_formats(as_json, as_markdown)
    result = run_report(
        resolve_run(run_name, runs_dir_or_default(runs_dir)), failures_by=failures_by, top=top
    )
    if as_json:
        print_json(result.to_dict())
        return EXIT_OK
    from octopipe.cli.report_view import print_report, report_markdown  # tables: not for --json

    if as_markdown:
        click.echo(report_markdown(result), nl=False)
    else:
        print_report(result, console)
    return EXIT_OK


@click.command()
@click.argument("runs", metavar="RUN RUN...", nargs=-1, required=True)
@runs_dir_option
@_with_formats
def compare(runs: tuple[str, ...], runs_dir: Path | None, as_json: bool, as_markdown: bool) -> int:
    """Runs side by side: pipeline, provider/model, mode, units, valid, pass rate per step,
    retries, tokens, cost, cost per valid unit, duration."""
    _check_formats(as_json, as_markdown)
    if len(runs) < 2:
        raise UsageError(f"compare needs at least two runs, got {len(runs)}: {' '.join(runs)}")
    folder = runs_dir_or_default(runs_dir)
    result = compare_runs([resolve_run(name, folder) for name in runs])
    if as_json:
        print_json(result.to_dict())
        return EXIT_OK
    from octopipe.cli.report_view import comparison_markdown, print_comparison

    if as_markdown:
        click.echo(comparison_markdown(result), nl=False)
    else:
        print_comparison(result, console)
    return EXIT_OK
