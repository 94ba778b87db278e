"""``post`` (run a complete run's post-processing again) and ``analyze`` (the built-in
analysis of a run's results, with Octobatch's ``analyze_results.py`` options)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from octopipe.cli.options import runs_dir_option, runs_dir_or_default
from octopipe.cli.output import err_console, print_json
from octopipe.cli.status_cmds import print_post_report
from octopipe.engine.paths import resolve_run
from octopipe.errors import EXIT_FAILURE, EXIT_OK, CannotWrite


@click.command()
@click.argument("run", metavar="RUN")
@runs_dir_option
@click.option(
    "--allow-scripts",
    is_flag=True,
    help="Also run the pipeline folder's own scripts (post_process and run-scope steps).",
)
@click.option(
    "--allow-script",
    "allow_script",
    multiple=True,
    metavar="NAME",
    help="Allow one folder script: its post_process name, its path or its step name (repeatable).",
)
@click.option(
    "--stale-only",
    is_flag=True,
    help="Only what is not current: never ran, failed to finish, or computed from results "
    "the ledger has moved past.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what ran as JSON.")
def post(
    run: str,
    runs_dir: Path | None,
    allow_scripts: bool,
    allow_script: tuple[str, ...],
    stale_only: bool,
    as_json: bool,
) -> int:
    """Run a complete run's post-processing again: its run-scope steps, then its
    post_process entries, each recorded in the ledger.

    The built-in analysis (Octobatch's scripts/analyze_results.py), gzip and the unit
    extraction always run; the folder's own scripts only with --allow-scripts (or
    --allow-script NAME), otherwise they are listed as skipped with the command that would
    run. Outputs go to RUN/outputs/. Exit 1 when an action failed.
    """
    from octopipe.engine.postprocess import ScriptPermission, rerun_post

    paths = resolve_run(run, runs_dir_or_default(runs_dir))
    allow = ScriptPermission(allow_scripts, tuple(allow_script))
    report = rerun_post(paths, allow, only_stale=stale_only)
    if as_json:
        print_json(
            {
                "run": paths.name,
                "actions": [
                    {
                        "action": a.action.key,
                        "name": a.action.name,
                        "kind": a.action.kind,
                        "outcome": a.outcome,
                        "exit_code": a.exit_code,
                        "output": a.output,
                        "detail": a.detail,
                        "command": a.command,
                    }
                    for a in report.actions
                ],
            }
        )
    elif report.actions:
        print_post_report(paths, report)
    else:
        click.echo(f"{paths.name}: nothing to run (no post-processing, or all of it current)")
    return EXIT_FAILURE if report.failed else EXIT_OK


ANALYZE_HELP = """The built-in analysis of a run's results: its last step's valid records,
grouped and aggregated as Octobatch's scripts/analyze_results.py does, with the same options
and the same numbers.

\b
  --group-by FIELD            group records by this field (required)
  --count-field FIELD         count each value of FIELD per group, as percentages
    --net-positive VALUE      values counted +1 in a Net column (repeatable)
    --net-negative VALUE      values counted -1 (repeatable)
  --numeric-field FIELD       count, mean, median, stdev, min, max of FIELD per group
    --custom-stat "Name=expr" another column; expr in octopipe's expression language over
                              data count mean median stdev variance min_val max_val sum_val
  --output-format table|csv   (default table)
  --title TEXT                the table's title
  --output FILE               write to FILE instead of standard output

Example: octopipe analyze blackjack_run --group-by strategy_name --count-field result
--net-positive player_wins --net-negative dealer_wins
"""


@click.command(
    help=ANALYZE_HELP,
    context_settings={"ignore_unknown_options": True},
)
@click.argument("run", metavar="RUN")
@runs_dir_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="OPTIONS...")
def analyze(run: str, runs_dir: Path | None, args: tuple[str, ...]) -> int:
    from octopipe.core.analysis import analyze as aggregate
    from octopipe.core.analysis import captured, parse_analysis_args, render
    from octopipe.engine.exports import final_step_records

    spec = parse_analysis_args(args)
    paths = resolve_run(run, runs_dir_or_default(runs_dir))
    with final_step_records(paths) as records:
        result = aggregate(records, spec)
    for note in result.notes:
        err_console.print(note, markup=False)
    if spec.output_format == "csv":
        for error in result.errors:
            err_console.print(f"Warning: {error}", markup=False)
    text = render(result)
    if spec.output is not None:
        try:
            Path(spec.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CannotWrite.from_os_error(exc, spec.output, "analysis output") from None
        err_console.print(f"Output written to {spec.output}", markup=False)
    else:
        sys.stdout.write(captured(text))
    return EXIT_OK


__all__ = ["analyze", "post"]
