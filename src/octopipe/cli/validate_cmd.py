"""``octopipe validate PIPELINE``: every static problem of a pipeline folder, or OK + summary."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from octopipe.cli.options import UNIT_COUNT
from octopipe.cli.output import console, err_console, fail_json_or_text, print_json
from octopipe.core.checker import CheckReport, check_pipeline
from octopipe.core.config import Pipeline, load_pipeline
from octopipe.core.pipeline_code import CodeFile, CodeListing, folder_code
from octopipe.errors import EXIT_FAILURE, EXIT_OK, ConfigError


@click.command()
@click.argument("pipeline", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--max-units", type=UNIT_COUNT, help="Count only the first N units.")
@click.option("--repeat", type=UNIT_COUNT, help="Override processing.repeat.")
def validate(pipeline: Path, as_json: bool, max_units: int | None, repeat: int | None) -> int:
    """Check a pipeline folder without spending anything.

    Checks structure, files, the links between steps and their templates, schemas and
    validation, expression syntax, the names every expression, rule and template reads, and
    trial-runs the first unit through the local steps. Lists the code the folder carries
    (Python and other executable files, scripts the config names): none of it runs unless you
    ask for it by name. Exit 0 when there is no error (warnings are printed), 2 otherwise.
    """
    try:
        loaded = load_pipeline(pipeline)
    except ConfigError as exc:
        code = _code(pipeline, None)
        if as_json:
            print_json({"ok": False, "problems": [p.to_dict() for p in exc.problems], **code})
            return exc.exit_code
        fail_json_or_text(False, exc)
        print_code(folder_code(pipeline))
        return exc.exit_code
    report = check_pipeline(loaded, max_units=max_units, repeat=repeat)
    if as_json:
        print_json({**report.to_dict(), **_code(pipeline, loaded)})
    else:
        _print_report(report)
        print_code(folder_code(pipeline, loaded))
    return EXIT_OK if report.ok else ConfigError.exit_code if report.errors else EXIT_FAILURE


def _print_report(report: CheckReport) -> None:
    for problem in report.problems:
        target = err_console if problem.level == "error" else console
        target.print(problem.render(), markup=False)
    if not report.ok:
        err_console.print(f"[red]{len(report.errors)} error(s)[/red] in {report.pipeline}")
        return
    table = Table(title=None, box=None, pad_edge=False)
    for column in ("step", "kind", "LLM calls"):
        table.add_column(column)
    for step in report.steps:
        calls = "-" if step.kind != "llm" else ("?" if step.calls is None else f"{step.calls:,}")
        kind = step.kind + (
            f" (x{step.fan_out_ratio:g} per unit in trial)"
            if step.fan_out_ratio is not None
            else ""
        )
        table.add_row(step.name, kind, calls)
    units = "?" if report.units is None else f"{report.units:,}"
    warnings = len(report.problems)
    console.print(
        f"[green]OK[/green] {report.pipeline}: {units} units, "
        f"{len(report.steps)} steps" + (f", {warnings} warning(s)" if warnings else "")
    )
    console.print(table)


def _code(folder: Path, pipeline: Pipeline | None) -> dict[str, object]:
    listing = folder_code(folder, pipeline)
    return {"code": [f.to_dict() for f in listing.files], "code_listing_complete": listing.complete}


def print_code(listing: CodeListing) -> None:
    """The code a folder carries, and when (if ever) each piece would run."""
    if not listing.files:
        return
    console.print(
        "this folder carries code: none of it runs unless you ask for it by name", markup=False
    )
    labels = [_label(f) for f in listing.files]
    width = max(len(f.path) for f in listing.files)
    label_width = max(len(label) for label in labels)
    for f, label in zip(listing.files, labels, strict=True):
        console.print(f"  {f.path:<{width}}  {label:<{label_width}}  {f.runs}", markup=False)
    if not listing.complete:
        console.print("  (the folder has too many files: only the first ones were looked at)")


def _label(code: CodeFile) -> str:
    if code.named_by:
        return f"script ({code.named_by})"
    return {"python": "Python file"}.get(code.kind, f"{code.kind} file")
