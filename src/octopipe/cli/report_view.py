"""How ``report`` and ``compare`` look: terminal (rich tables and small bar charts) and
Markdown. ``--json`` is ``RunReport.to_dict`` / ``Comparison.to_dict`` as they are.

Everything a pipeline or a model wrote (step and pipeline names, error messages, field
values) is shown as plain text: never read as rich markup, control and format characters
shown as escapes (``\\x1b``), and in Markdown, characters that would make a link, an image or
HTML are escaped, so a report pasted into an issue fetches nothing.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from rich.bar import Bar
from rich.console import Console
from rich.table import Table
from rich.text import Text

from octopipe.cli.status_cmds import cost_text, prices_text, print_cost_split
from octopipe.engine.compare import Comparison, SharedAnalysis, run_summary
from octopipe.engine.report import (
    ErrorSummary,
    Money,
    Retries,
    RunReport,
    StepReport,
    Usage,
    ValueRow,
)

BAR_WIDTH = 24
VALUES_SHOWN = 20
_FUNNEL_PARTS = (("valid", "█", "green"), ("failed", "▓", "red"), ("retrying", "▒", "yellow"))
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|!~#"})


# --- plain text from untrusted values -----------------------------------------------------


def clean(value: Any) -> str:
    """``value`` as one line of printable text: control, format and line-separator
    characters become escapes."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if unicodedata.category(char) == "Zs":
        return " "
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(value: Any, style: str = "") -> Text:
    return Text(clean(value), style=style)


def md(value: Any) -> str:
    return clean(value).translate(_MD_SPECIAL)


# --- numbers ---------------------------------------------------------------------------------


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def money(cost: Money) -> str:
    return cost_text(cost.known_usd, cost.unknown)


def usd(value: float | None) -> str:
    return "unknown" if value is None else cost_text(value, 0)


def per_valid(value: float | None, usage: Usage, valid: int) -> str:
    """Cost per valid unit: ``-`` without LLM calls or valid units, ``unknown`` when a call
    has no known price."""
    if not usage.calls or not valid:
        return "-"
    return usd(value)


def step_money(usage: Usage, cost: Money) -> str:
    return money(cost) if usage.calls else "-"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def rate(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:,.2f} {unit}/s"


# --- the rows both views show: one builder, two renderers ---------------------------------

FUNNEL_COLUMNS = (
    "scope",
    "input",
    "valid",
    "failed",
    "retrying",
    "in flight",
    "pending",
    "yield",
    "pass rate",
    "1st try",
)
COST_COLUMNS = (
    "calls",
    "retried units",
    "extra attempts",
    "input tokens",
    "output tokens",
    "cost",
    "retry cost",
    "cost / valid unit",
)
FAILURES_BY_COLUMNS = ("units", "valid", "failed", "retrying", "fail rate")


def funnel_cells(step: StepReport) -> list[str]:
    """A step's funnel row after its name, in ``FUNNEL_COLUMNS`` order."""
    return [
        step.scope,
        f"{step.input:,}",
        f"{step.valid:,}",
        f"{step.failed:,}",
        f"{step.retrying:,}",
        f"{step.in_flight:,}",
        f"{step.pending:,}",
        pct(step.yield_),
        pct(step.pass_rate),
        pct(step.first_attempt_pass_rate),
    ]


def step_cost_cells(step: StepReport) -> list[str]:
    """A step's cost row after its name, in ``COST_COLUMNS`` order."""
    return _cost_cells(step.usage, step.retries, step.cost_per_valid_unit, step.valid)


def run_cost_cells(report: RunReport) -> list[str]:
    """The whole run's cost row, in ``COST_COLUMNS`` order."""
    return _cost_cells(report.usage, report.retries, report.cost_per_valid_unit, report.valid)


def _cost_cells(
    usage: Usage, retries: Retries, cost_per_valid: float | None, valid: int
) -> list[str]:
    return [
        f"{usage.calls:,}",
        f"{retries.units:,}",
        f"{retries.extra_attempts:,}",
        f"{usage.input_tokens:,}",
        f"{usage.output_tokens:,}",
        step_money(usage, usage.cost),
        step_money(retries.usage, retries.usage.cost),
        per_valid(cost_per_valid, usage, valid),
    ]


def failures_by_cells(row: ValueRow) -> list[str]:
    """A value's row after its label, in ``FAILURES_BY_COLUMNS`` order."""
    return [
        f"{row.units:,}",
        f"{row.valid:,}",
        f"{row.failed:,}",
        f"{row.retrying:,}",
        pct(row.fail_rate),
    ]


# --- the terminal view of a report -----------------------------------------------------------


def print_report(report: RunReport, console: Console) -> None:
    _heading(report, console)
    console.print(_funnel(report))
    _step_notes(report, console)
    console.print(_costs(report))
    if report.costs is not None:
        print_cost_split(report.costs.to_dict())
    if report.prices:
        console.print(f"priced by {prices_text(report.prices)}", markup=False)
    for step in report.steps:
        _print_errors(console, step, step.errors, "units failing now", step.error_groups)
        if step.retries.extra_attempts:
            _print_errors(
                console,
                step,
                step.attempt_errors,
                "failed attempts, retried or not",
                step.attempt_error_groups,
            )
    if report.failures_by is not None:
        _print_failures_by(report, console)


def _heading(report: RunReport, console: Console) -> None:
    reason = f" ({report.reason})" if report.reason else ""
    models = ", ".join(report.models) or _route(report)
    line = Text()
    line.append(clean(report.name), style="bold")
    line.append(f" [{clean(report.pipeline)}] {report.status}{clean(reason)}; {report.mode}")
    line.append(f"; {clean(models)}" if models else "")
    console.print(line)
    console.print(
        f"started {report.started_at or '-'}, finished {report.finished_at or '-'}, "
        f"elapsed {duration(report.elapsed_s)}; {report.units_done:,} units done "
        f"({rate(report.units_per_s, 'units')}), {report.usage.calls:,} LLM calls "
        f"({rate(report.calls_per_s, 'calls')})",
        markup=False,
    )


def _route(report: RunReport) -> str:
    parts = [p for p in (report.provider, report.model) if p]
    return "/".join(parts)


def _funnel(report: RunReport) -> Table:
    table = Table(title="funnel", title_justify="left", box=None, pad_edge=False)
    for column in ("step", *FUNNEL_COLUMNS, ""):
        table.add_column(column, justify="left" if column in ("step", "scope", "") else "right")
    widest = max((s.input for s in report.steps), default=0)
    for step in report.steps:
        table.add_row(plain(step.name), *funnel_cells(step), funnel_bar(step, widest))
    table.caption = "█ valid  ▓ failed  ▒ retrying  ░ in flight or pending"
    table.caption_justify = "left"
    return table


def funnel_bar(step: StepReport, widest: int) -> Text:
    """The step's input as a bar as long as its share of the widest step, split by state;
    every state present gets at least one cell."""
    bar = Text()
    if not widest or not step.input:
        return bar
    length = max(1, round(BAR_WIDTH * step.input / widest))
    parts = [(char, style, getattr(step, attr)) for attr, char, style in _FUNNEL_PARTS]
    parts.append(("░", "dim", step.in_flight + step.pending))
    for (char, style, _), cells in zip(
        parts, apportion([n for *_, n in parts], length), strict=True
    ):
        bar.append(char * cells, style=style)
    return bar


def apportion(counts: Sequence[int], cells: int) -> list[int]:
    """``cells`` shared in proportion to ``counts`` (largest remainders), at least one for
    every non-zero count while there are cells enough."""
    total = sum(counts)
    if not total:
        return [0] * len(counts)
    exact = [cells * n / total for n in counts]
    shares = [int(x) for x in exact]
    for index in sorted(range(len(counts)), key=lambda i: exact[i] - shares[i], reverse=True):
        if sum(shares) >= cells:
            break
        shares[index] += 1
    for index, n in enumerate(counts):
        if n and not shares[index]:
            donor = max(range(len(shares)), key=lambda i: shares[i])
            if shares[donor] > 1:
                shares[donor] -= 1
                shares[index] = 1
    return shares


def _step_notes(report: RunReport, console: Console) -> None:
    for step in report.steps:
        name = clean(step.name)
        for label, stages in (
            ("failed", step.failed_by_stage),
            ("retrying", step.retrying_by_stage),
        ):
            if stages:
                listed = ", ".join(f"{clean(k)} {v:,}" for k, v in stages.items())
                console.print(f"  {name}: {label} by stage: {listed}", markup=False)
        if step.fan_out is not None:
            fan = step.fan_out
            each = "-" if fan.per_parent is None else f"{fan.per_parent:,.2f}"
            console.print(
                f"  {name}: fan-out: {fan.fanned_out:,} of {fan.parents:,} units made "
                f"{fan.children:,} units ({each} each); the next step counts those",
                markup=False,
            )
        if step.max_iterations:
            console.print(
                f"  {name}: {step.max_iterations:,} unit(s) reached max_iterations",
                style="yellow",
                markup=False,
            )


def _costs(report: RunReport) -> Table:
    table = Table(title="tokens and cost", title_justify="left", box=None, pad_edge=False)
    for column in ("step", *COST_COLUMNS, "models"):
        table.add_column(column, justify="left" if column in ("step", "models") else "right")
    for step in report.steps:
        table.add_row(
            plain(step.name), *step_cost_cells(step), plain(", ".join(step.models) or "-")
        )
    table.add_row(Text("run", style="bold"), *run_cost_cells(report), "")
    first, retries = report.first, report.retries
    share = report.retry_cost_share
    split = Text(
        f"first attempts {money(first.cost)} ({first.input_tokens:,} in, "
        f"{first.output_tokens:,} out); retries {money(retries.usage.cost)} "
        f"({retries.usage.input_tokens:,} in, {retries.usage.output_tokens:,} out)"
    )
    if share is not None:
        split.append(f" = {share:.1%} of the cost ")
        split.append_text(_bar_text(share, 1.0, "red"))
    table.caption = split
    table.caption_justify = "left"
    return table


def _bar_text(value: float, top: float, color: str) -> Text:
    cells = 0 if not top else round(BAR_WIDTH * value / top)
    return Text("█" * max(cells, 1 if value else 0), style=color)


def _print_errors(
    console: Console, step: StepReport, errors: list[ErrorSummary], what: str, groups: int
) -> None:
    if not errors:
        return
    count = "units" if what.startswith("units") else "attempts"
    table = Table(
        title=Text(f"top errors at {clean(step.name)} ({what})"),
        title_justify="left",
        box=None,
        pad_edge=False,
    )
    for column in (count, "", "stage", "message", "e.g."):
        table.add_column(column, justify="right" if column == count else "left")
    top = max(e.count for e in errors)
    for error in errors:
        table.add_row(
            f"{error.count:,}",
            Bar(top, 0, error.count, width=12, color="red"),
            plain(error.stage or "-"),
            plain(error.message),
            plain(", ".join(error.samples)),
        )
    if groups > len(errors):
        table.caption = f"... and {groups - len(errors):,} more (--top N shows more)"
        table.caption_justify = "left"
    console.print(table)


def _print_failures_by(report: RunReport, console: Console) -> None:
    field = clean(report.failures_by)
    shown = False
    for step in report.steps:
        rows = step.failures_by or []
        if not rows:
            continue
        shown = True
        table = Table(
            title=Text(f"failures at {clean(step.name)} by {field}"),
            title_justify="left",
            box=None,
            pad_edge=False,
        )
        for column in (field, *FAILURES_BY_COLUMNS, ""):
            table.add_column(column, justify="left" if column in (field, "") else "right")
        top = max(r.failing for r in rows) or 1
        for row in rows[:VALUES_SHOWN]:
            table.add_row(
                plain(_value_label(row)),
                *failures_by_cells(row),
                Bar(top, 0, row.failing, width=16, color="red"),
            )
        if len(rows) > VALUES_SHOWN:
            table.caption = f"... and {len(rows) - VALUES_SHOWN:,} more values (--json lists all)"
            table.caption_justify = "left"
        console.print(table)
    if not shown:
        console.print(Text(f"failures by {field}: no unit is failing"))


def _value_label(row: ValueRow) -> str:
    return "(no such field)" if row.missing else clean(row.value)


# --- the Markdown view of a report ------------------------------------------------------------


def report_markdown(report: RunReport) -> str:
    lines = [
        f"# Report: {md(report.name)}",
        "",
        f"Pipeline **{md(report.pipeline)}**, status **{report.status}**"
        + (f" ({md(report.reason)})" if report.reason else "")
        + f", mode {report.mode}, models {md(', '.join(report.models) or _route(report) or '-')}.",
        f"Started {report.started_at or '-'}, finished {report.finished_at or '-'}, elapsed "
        f"{duration(report.elapsed_s)}; {report.units_done:,} units done "
        f"({rate(report.units_per_s, 'units')}), {report.usage.calls:,} LLM calls "
        f"({rate(report.calls_per_s, 'calls')}).",
        "",
        "## Funnel",
        "",
    ]
    lines += _md_table(
        ["step", *FUNNEL_COLUMNS, "failed by stage", "retrying by stage"],
        [
            [
                md(s.name),
                *funnel_cells(s),
                _md_stages(s.failed_by_stage),
                _md_stages(s.retrying_by_stage),
            ]
            for s in report.steps
        ],
    )
    lines += _md_notes(report)
    lines += ["", "## Tokens and cost", ""]
    rows = [[md(s.name), *step_cost_cells(s)] for s in report.steps]
    rows.append(["**run**", *run_cost_cells(report)])
    lines += _md_table(["step", *COST_COLUMNS], rows)
    share = report.retry_cost_share
    lines += [
        "",
        f"First attempts {money(report.first.cost)}, retries "
        f"{money(report.retries.usage.cost)}"
        + ("" if share is None else f" ({share:.1%} of the cost)")
        + ".",
    ]
    for step in report.steps:
        lines += _md_errors(step.name, step.errors, "units", "units failing now")
        lines += _md_errors(
            step.name, step.attempt_errors, "attempts", "failed attempts, retried or not"
        )
    if report.failures_by is not None:
        lines += _md_failures_by(report, report.failures_by)
    return "\n".join(lines) + "\n"


def _md_notes(report: RunReport) -> list[str]:
    notes = [
        f"- {md(s.name)}: fan-out: {s.fan_out.fanned_out:,} of {s.fan_out.parents:,} units "
        f"made {s.fan_out.children:,} units"
        for s in report.steps
        if s.fan_out is not None
    ] + [
        f"- {md(s.name)}: {s.max_iterations:,} unit(s) reached max_iterations"
        for s in report.steps
        if s.max_iterations
    ]
    return ["", *notes] if notes else []


def _md_failures_by(report: RunReport, field: str) -> list[str]:
    lines: list[str] = []
    for step in report.steps:
        if step.failures_by:
            lines += ["", f"## Failures at {md(step.name)} by {md(field)}", ""]
            lines += _md_table(
                [md(field), *FAILURES_BY_COLUMNS],
                [[md(_value_label(r)), *failures_by_cells(r)] for r in step.failures_by],
            )
    return lines


def _md_stages(stages: dict[str, int]) -> str:
    return ", ".join(f"{md(k)} {v:,}" for k, v in stages.items()) or "-"


def _md_errors(step: str, errors: list[ErrorSummary], count: str, what: str) -> list[str]:
    if not errors:
        return []
    return [
        "",
        f"## Top errors at {md(step)} ({what})",
        "",
        *_md_table(
            [count, "stage", "message", "e.g."],
            [
                [f"{e.count:,}", md(e.stage or "-"), md(e.message), md(", ".join(e.samples))]
                for e in errors
            ],
        ),
    ]


def _md_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


# --- compare ---------------------------------------------------------------------------------


def _compare_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Rows are measures, columns are runs (side by side)."""
    summaries = [run_summary(r, comparison.steps) for r in comparison.reports]
    reports = comparison.reports

    def row(label: str, cells: Iterable[str]) -> list[str]:
        return [label, *cells]

    rows = [
        row("pipeline", (clean(r.pipeline) for r in reports)),
        row("status", (r.status for r in reports)),
        row("mode", (r.mode for r in reports)),
        row("provider/model", (clean(", ".join(r.models) or _route(r) or "-") for r in reports)),
        row("units", (f"{r.units:,}" for r in reports)),
        row("valid", (f"{r.valid:,}" for r in reports)),
        row("failed", (f"{r.failed:,}" for r in reports)),
    ]
    for name in comparison.steps:
        rows.append(
            row(f"pass rate: {clean(name)}", (pct(s["pass_rate"][name]) for s in summaries))
        )
    rows += [
        row(
            "retries",
            (f"{r.retries.units:,} units, {r.retries.extra_attempts:,} attempts" for r in reports),
        ),
        row(
            "tokens in / out",
            (f"{r.usage.input_tokens:,} / {r.usage.output_tokens:,}" for r in reports),
        ),
        row("cost", (step_money(r.usage, r.usage.cost) for r in reports)),
        row(
            "retry cost",
            (step_money(r.retries.usage, r.retries.usage.cost) for r in reports),
        ),
        row(
            "cost / valid unit",
            (per_valid(r.cost_per_valid_unit, r.usage, r.valid) for r in reports),
        ),
        row("duration", (duration(r.elapsed_s) for r in reports)),
    ]
    return ["", *(clean(r.name) for r in reports)], rows


def print_comparison(comparison: Comparison, console: Console) -> None:
    headers, rows = _compare_rows(comparison)
    table = Table(box=None, pad_edge=False)
    for index, header in enumerate(headers):
        table.add_column(plain(header), justify="left" if index == 0 else "right")
    for cells in rows:
        table.add_row(*(Text(c) for c in cells))
    console.print(table)
    for shared in comparison.analyses:
        console.print(_analysis_table(shared))


def _analysis_table(shared: SharedAnalysis) -> Table:
    table = Table(title=plain(shared.title), title_justify="left", box=None, pad_edge=False)
    for column in shared.columns:
        table.add_column(plain(column))
    for values in shared.rows:
        table.add_row(*(plain("-" if v is None else v) for v in values))
    return table


def comparison_markdown(comparison: Comparison) -> str:
    headers, rows = _compare_rows(comparison)
    lines = [
        "# Comparison",
        "",
        *_md_table([md(h) for h in headers], [[md(c) for c in r] for r in rows]),
    ]
    for shared in comparison.analyses:
        lines += ["", f"## {md(shared.title)}", ""]
        lines += _md_table(
            [md(c) for c in shared.columns],
            [[md("-" if v is None else v) for v in values] for values in shared.rows],
        )
    return "\n".join(lines) + "\n"
