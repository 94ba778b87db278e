"""Integrity and admin commands: ``info``, ``verify``, ``repair``, ``retry``, ``revalidate``,
``export``, ``pause``, ``kill``, ``rename``, ``archive``, ``unarchive``, ``logs``.

Reading commands open the ledger read-only and never disturb a live runner. Changing commands
go through ``engine.control.change_run``: applied here when no runner is live, queued for the
live runner otherwise. Exit codes: 0 ok, 1 findings or failures, 2 usage, 4 store, 5 locked.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import click

from octopipe.cli.options import runs_dir_option
from octopipe.cli.output import console, print_json
from octopipe.cli.status_cmds import cost_text, print_post_states
from octopipe.engine.commands import Command, Kill, Pause, Rename, Repair, Retry
from octopipe.engine.control import change_run_detailed
from octopipe.engine.paths import RunPaths, default_runs_dir, resolve_run
from octopipe.engine.queries import (
    STAGES,
    StepReport,
    VerifyReport,
    run_details,
    step_index_of,
    verify_run,
)
from octopipe.errors import EXIT_FAILURE, EXIT_OK


# Heavy engine modules (pipeline parsing, validation) are imported only by the commands that
# use them, so `verify`, `info` and `logs` start fast.
def _revalidate_run(*args: Any, **kwargs: Any) -> Any:
    from octopipe.engine.revalidate import revalidate_run

    return revalidate_run(*args, **kwargs)


def _export_run_steps(*args: Any, **kwargs: Any) -> Any:
    from octopipe.engine.exports import export_run_steps

    return export_run_steps(*args, **kwargs)


def _archive_run(*args: Any, **kwargs: Any) -> Any:
    from octopipe.engine.archive import archive_run

    return archive_run(*args, **kwargs)


def _unarchive_run(*args: Any, **kwargs: Any) -> Any:
    from octopipe.engine.archive import unarchive_run

    return unarchive_run(*args, **kwargs)


RECORDED = "@recorded"  # --use-source-config without a PATH: the folder the ledger recorded

json_option = click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
wait_option = click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Seconds to wait for a live runner to apply the change.",
)


def _base(runs_dir: Path | None) -> Path:
    return runs_dir if runs_dir is not None else default_runs_dir()


def _paths(run: str, runs_dir: Path | None) -> RunPaths:
    return resolve_run(run, _base(runs_dir))


def _echo_ids(ids: list[str], indent: str = "    ") -> None:
    """Every id, wrapped to the terminal width; never a sample."""
    width = max(40, console.width)
    text = ", ".join(ids)
    for line in textwrap.wrap(
        text,
        width=width,
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    ):
        click.echo(line)


def _echo_table(headers: list[str], rows: list[list[str]], left: int = 1) -> None:
    """Plain aligned columns (the first ``left`` ones left-aligned, the others right); never
    truncated, whatever the terminal width."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        cells = [
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        click.echo("  ".join(cells).rstrip())


def _change(paths: RunPaths, command: Command, wait_s: float, as_json: bool) -> int:
    outcome = change_run_detailed(paths, command, wait_s=wait_s)
    if as_json:
        print_json({"run": paths.name, **outcome.to_dict()})
    else:
        click.echo(f"{paths.name}: {outcome.message}")
    return EXIT_OK


# --- info ---------------------------------------------------------------------------------------


@click.command()
@click.argument("run", metavar="RUN")
@runs_dir_option
@json_option
def info(run: str, runs_dir: Path | None, as_json: bool) -> int:
    """Everything about a run: status, paths, options, the funnel per step with failures by
    stage, batches by state, the last events, liveness and the runner's pid."""
    details = run_details(_paths(run, runs_dir))
    if as_json:
        print_json(details.to_dict())
        return EXIT_OK
    view = details.status
    live = f"live, runner pid {view.runner_pid}" if view.live else "no live runner"
    reason = f" ({view.reason})" if view.reason else ""
    title = view.name if view.display_name == view.name else f"{view.name} ({view.display_name})"
    click.echo(f"run        {title}")
    click.echo(f"pipeline   {view.pipeline}")
    click.echo(f"status     {view.status}{reason}; {live}")
    click.echo(
        f"created    {view.created_at}; started {details.started_at or '-'}; "
        f"finished {details.finished_at or '-'}; updated {view.updated_at}"
    )
    click.echo(f"folder     {view.path}")
    click.echo(f"snapshot   {details.snapshot}")
    click.echo(f"ledger     {details.ledger}")
    click.echo(f"outputs    {details.outputs}")
    options = ", ".join(f"{k}={v}" for k, v in details.options.items())
    click.echo(f"options    {options}")
    unknown = (
        f" ({view.unknown_cost_attempts:,} calls of unknown cost)"
        if view.unknown_cost_attempts
        else ""
    )
    click.echo(
        f"cost       {cost_text(view.known_cost_usd, view.unknown_cost_attempts)}{unknown}; "
        f"tokens in {view.input_tokens:,}, out {view.output_tokens:,}"
    )
    rows = [
        [
            step.name,
            step.scope,
            f"{step.input:,}",
            f"{step.valid:,}",
            f"{step.pending:,}",
            f"{step.in_flight:,}",
            f"{step.retrying:,}",
            f"{step.failed:,}",
            "-" if step.yield_ is None else f"{step.yield_:.1%}",
        ]
        for step in details.funnel
    ]
    headers = ["step", "scope", "input", "valid", "pending", "in_flight", "retrying", "failed"]
    _echo_table([*headers, "yield"], rows, left=2)
    for step in details.funnel:
        if step.failed_by_stage:
            stages = ", ".join(f"{k} {v:,}" for k, v in step.failed_by_stage.items())
            click.echo(f"  {step.name} failures by stage: {stages}")
    if details.batches:
        click.echo("batches")
        for step_name, states in details.batches.items():
            click.echo(f"  {step_name}: " + ", ".join(f"{k} {v}" for k, v in states.items()))
    else:
        click.echo("batches    none")
    print_post_states(view.name, view.post)
    click.echo(f"last {len(details.events)} event(s)")
    for event in details.events:
        click.echo(f"  {event['ts']} {event['level']:<7} [{event['tag']}] {event['message']}")
    return EXIT_OK


# --- verify / repair / retry ------------------------------------------------------------------


@click.command()
@click.argument("run", metavar="RUN")
@runs_dir_option
@click.option(
    "--deep",
    is_flag=True,
    help="Also read every attempt and stored value: attempt counters behind their attempts "
    "(miscounted) and values that cannot be read (corrupt). About 3x slower on big runs.",
)
@json_option
def verify(run: str, runs_dir: Path | None, deep: bool, as_json: bool) -> int:
    """Check that every unit is accounted for at every step.

    For each step: units expected (the previous step's valid units, or generated/fan-out
    units) against valid, retrying, failed, pending and in flight, and EVERY unit id that is
    missing, duplicated (in two live batches), orphaned or stranded (in flight with no live
    runner); with --deep also miscounted (its attempt counter is behind its stored attempts)
    and corrupt (a stored value that cannot be read). Exit 0 when the run is whole, 1 when
    anything is out of place.
    """
    paths = _paths(run, runs_dir)
    report = verify_run(paths, deep=deep)
    if as_json:
        print_json({"run": paths.name, "deep": deep, **report.to_dict()})
    else:
        _print_verify(paths.name, report)
        if not deep:
            click.echo("(--deep also reads every stored value: attempt counters, corrupt rows)")
    return EXIT_OK if report.ok else EXIT_FAILURE


_PROBLEM_LABELS = {
    "missing": "expected here, no row",
    "duplicated": "in two live batches",
    "orphaned": "a row here, never expected here",
    "miscounted": "attempt counter behind the stored attempts",
    "stranded": "in flight, no live runner",
    "corrupt": "a stored value cannot be read",
}


def _print_verify(name: str, report: VerifyReport) -> None:
    problems = StepReport.PROBLEMS
    headers = ["step", "expected", "valid", "retrying", "failed", "pending", "in_flight"]
    rows = [
        [
            st.name,
            f"{st.expected:,}",
            f"{st.valid:,}",
            f"{st.retrying:,}",
            f"{st.failed:,}",
            f"{st.pending:,}",
            f"{st.in_flight:,}",
            *(f"{len(getattr(st, p)):,}" for p in problems),
        ]
        for st in report.steps
    ]
    _echo_table([*headers, *problems], rows)
    for s in report.steps:
        for problem in problems:
            ids = getattr(s, problem)
            if ids:
                click.echo(f"{problem} at {s.name} ({len(ids):,}): {_PROBLEM_LABELS[problem]}")
                _echo_ids(ids)
    for problem in report.problems:
        click.echo(f"damaged: {problem}")
    for problem in report.totals:
        click.echo(f"totals: {problem}")
    if report.ok:
        click.echo(f"{name}: every unit is accounted for")
        return
    count = {p: sum(len(getattr(s, p)) for s in report.steps) for p in problems}
    click.echo(f"{name}: {sum(count.values()):,} unit(s) out of place")
    if count["missing"] or count["miscounted"] or count["stranded"]:
        click.echo(
            f"  `octopipe repair {name}` requeues missing units, raises attempt counters and "
            f"returns stranded units to pending; then `octopipe run {name}`"
        )
    if report.totals:
        click.echo(f"  `octopipe repair {name}` rebuilds the LLM totals row from the attempts")
    if count["corrupt"] or report.problems:
        click.echo(
            "  damaged values cannot be repaired from the ledger itself: restore "
            "ledger.db from a backup (exports stop at the first damaged record)"
        )


@click.command()
@click.argument("run", metavar="RUN")
@runs_dir_option
@wait_option
@json_option
def repair(run: str, runs_dir: Path | None, wait_s: float, as_json: bool) -> int:
    """Requeue every missing unit (expected at a step but without a row there; see `verify`).

    The units become pending at that step; resume the run (`octopipe run RUN`) to process
    them. With a live runner, the repair is queued and applied by it.
    """
    return _change(_paths(run, runs_dir), Repair(), wait_s, as_json)


@click.command()
@click.argument("run", metavar="RUN")
@runs_dir_option
@click.option("--step", "step_name", help="Only failures at this step.")
@click.option(
    "--stage",
    type=click.Choice(STAGES),
    help="Only failures whose last stage is this one.",
)
@click.option(
    "--unit",
    "unit_ids",
    multiple=True,
    metavar="ID",
    help="Only this unit (repeat the option for several).",
)
@wait_option
@json_option
def retry(
    run: str,
    runs_dir: Path | None,
    step_name: str | None,
    stage: str | None,
    unit_ids: tuple[str, ...],
    wait_s: float,
    as_json: bool,
) -> int:
    """Requeue failed units, and only those, with a fresh retry budget.

    Filters combine: a step, the stage of the last failure, unit ids. Every earlier attempt
    stays in the ledger. Resume the run (`octopipe run RUN`) to process them.
    """
    paths = _paths(run, runs_dir)
    command = Retry(
        step_idx=None if step_name is None else step_index_of(paths, step_name),
        stage=stage,
        unit_ids=tuple(dict.fromkeys(unit_ids)) or None,
    )
    return _change(paths, command, wait_s, as_json)


# --- revalidate -------------------------------------------------------------------------------


@click.command()
@click.argument("run", metavar="RUN")
@runs_dir_option
@click.option("--step", "step_name", help="Only this LLM step (default: every LLM step).")
@click.option(
    "--use-source-config",
    "source_config",
    is_flag=False,
    flag_value=RECORDED,
    default=None,
    metavar="[PATH]",
    help="Validate with the pipeline folder's current config instead of the run's snapshot: "
    "PATH, or without PATH the folder the run recorded at init. Put it after RUN.",
)
@json_option
def revalidate(
    run: str,
    runs_dir: Path | None,
    step_name: str | None,
    source_config: str | None,
    as_json: bool,
) -> int:
    """Check stored raw answers of failed LLM-step units again, with no API call.

    Units whose answer now passes become valid (resume the run to carry them on); the others
    keep their failure with the new errors. An answer that cannot be parsed stays failed with
    its raw text kept. Refused while a runner is live (pause it first). Exit 1 when failures
    remain.
    """
    paths = _paths(run, runs_dir)
    source = None if source_config in (None, RECORDED) else Path(source_config)
    report = _revalidate_run(
        paths, step=step_name, use_source=source_config is not None, source=source
    )
    remaining = report.still_failing + report.unparseable + report.skipped
    if as_json:
        print_json({"run": paths.name, **report.to_dict()})
        return EXIT_FAILURE if remaining else EXIT_OK
    click.echo(f"config: {report.config}")
    for s in report.steps:
        stages = ", ".join(f"{k} {v}" for k, v in s.by_stage.items())
        click.echo(
            f"  {s.step}: {s.checked} checked, {s.passed} passed, {s.still_failing} still "
            f"failing, {s.unparseable} unparseable, {s.skipped} skipped (no raw response)"
            + (f" [{stages}]" if stages else "")
        )
    click.echo(
        f"{report.passed} passed, {report.still_failing} still failing, "
        f"{report.unparseable} unparseable, {report.skipped} skipped"
    )
    if report.passed:
        click.echo(f"resume the run to carry the passed units on: octopipe run {paths.name}")
    return EXIT_FAILURE if remaining else EXIT_OK


# --- export ---------------------------------------------------------------------------------


@click.command()
@click.argument("run", metavar="RUN")
@runs_dir_option
@click.option(
    "--step",
    "step_name",
    help="The step to export (default: the last step; with --failures, every step).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "parquet"]),
    default="jsonl",
    show_default=True,
    help="File format (parquet needs the optional pyarrow).",
)
@click.option("--gzip", "compress", is_flag=True, help="Gzip the file (jsonl, csv).")
@click.option("--failures", is_flag=True, help="Export failures instead of validated results.")
@json_option
def export(
    run: str,
    runs_dir: Path | None,
    step_name: str | None,
    fmt: str,
    compress: bool,
    failures: bool,
    as_json: bool,
) -> int:
    """Write validated results (or failures) from the ledger into the run's outputs/ folder.

    Files are written atomically and are reproducible: exporting twice gives the same bytes.
    """
    paths = _paths(run, runs_dir)
    written = _export_run_steps(paths, step_name, fmt=fmt, compress=compress, failures=failures)
    if as_json:
        print_json(
            {
                "run": paths.name,
                "files": [
                    {
                        "path": str(f.path),
                        "step": f.step,
                        "kind": f.kind,
                        "format": f.fmt,
                        "gzip": f.compressed,
                        "records": f.records,
                    }
                    for f in written
                ],
            }
        )
    else:
        for f in written:
            click.echo(f"{f.records:,} {f.kind} record(s) of {f.step} -> {f.path}")
    return EXIT_OK


# --- pause / kill / rename --------------------------------------------------------------------


@click.command()
@click.argument("run", metavar="RUN")
@runs_dir_option
@click.option("--reason", help="Why (kept as the run's status reason).")
@wait_option
@json_option
def pause(run: str, runs_dir: Path | None, reason: str | None, wait_s: float, as_json: bool) -> int:
    """Pause a run: its runner finishes the current pass, returns in-flight units to pending
    and exits. `octopipe run RUN` resumes it."""
    return _change(_paths(run, runs_dir), Pause(reason or None), wait_s, as_json)


@click.command()
@click.argument("run", metavar="RUN")
@runs_dir_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@wait_option
@json_option
def kill(run: str, runs_dir: Path | None, yes: bool, wait_s: float, as_json: bool) -> int:
    """Kill a run for good: its runner stops and the run can never be resumed (its ledger and
    outputs stay; it can then be archived)."""
    paths = _paths(run, runs_dir)
    if not yes:
        click.confirm(f"kill run {paths.name!r}? It cannot be resumed afterwards", abort=True)
    return _change(paths, Kill(), wait_s, as_json)


@click.command()
@click.argument("run", metavar="RUN")
@click.argument("display_name", metavar="NEW_DISPLAY_NAME")
@runs_dir_option
@wait_option
@json_option
def rename(run: str, display_name: str, runs_dir: Path | None, wait_s: float, as_json: bool) -> int:
    """Give a run a new display name (its folder and RUN name stay the same)."""
    return _change(_paths(run, runs_dir), Rename(display_name), wait_s, as_json)


# --- archive / unarchive --------------------------------------------------------------------


@click.command()
@click.argument("run", metavar="RUN")
@runs_dir_option
def archive(run: str, runs_dir: Path | None) -> int:
    """Move a finished run (complete, failed or killed; no live runner) into
    RUNS/_archive/. Refused if a run of that name is already archived."""
    moved = _archive_run(_base(runs_dir), run)
    click.echo(f"archived {moved.name} -> {moved.root}")
    return EXIT_OK


@click.command()
@click.argument("run", metavar="RUN")
@runs_dir_option
def unarchive(run: str, runs_dir: Path | None) -> int:
    """Move an archived run back into the runs folder. Refused if a run of that name exists
    there."""
    moved = _unarchive_run(_base(runs_dir), run)
    click.echo(f"unarchived {moved.name} -> {moved.root}")
    return EXIT_OK


# --- logs -------------------------------------------------------------------------------------


COMMANDS = (
    info,
    verify,
    repair,
    retry,
    revalidate,
    export,
    pause,
    kill,
    rename,
    archive,
    unarchive,
)

__all__ = [
    "COMMANDS",
    "archive",
    "export",
    "info",
    "kill",
    "pause",
    "rename",
    "repair",
    "retry",
    "revalidate",
    "unarchive",
    "verify",
]
