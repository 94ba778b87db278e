"""The built-in analysis of validated results: octopipe's own implementation of Octobatch's
``scripts/analyze_results.py``, with the same options, numbers, tables and CSV columns.

Pure: records in, text out. The API is three calls (``compare`` uses them too):

- ``parse_analysis_args(argv) -> AnalysisSpec``: the script's arguments as a post-process step
  lists them (``--group-by F`` and one of ``--count-field F`` / ``--numeric-field F``; with
  counts ``--net-positive V`` / ``--net-negative V`` (repeatable); with numbers
  ``--custom-stat "Name=expr"`` (repeatable); ``--output-format table|csv``, ``--title T``,
  ``--output FILE``). The run folder is not part of ``argv``. Bad arguments raise
  ``AnalysisArgsError`` with the same rules Octobatch applies (unknown options, the two modes
  together or neither, net values without counts, custom stats without numbers).
- ``analyze(records, spec) -> AnalysisResult``: group the records by ``str(record[group_by])``
  (records missing the group or the field, or with a value that is not a number in numeric
  mode, are skipped and counted). Count mode: per group the count of each distinct value
  (``str``), percentages of the group, and with net values the net score (case-insensitive
  match; positive wins when a value is in both lists). Numeric mode: ``float()`` of each value
  (so ``true`` counts 1, ``"7"`` counts 7), count/mean/median/stdev/min/max from ``statistics``
  (stdev and variance 0 below two values) and each custom stat, an expression in octopipe's
  safe expression language over ``data count mean median stdev variance min_val max_val
  sum_val`` (with ``sqrt log log10 exp abs sorted len sum min max`` and the other safe
  builtins); a stat that raises or is not a number is an error for that group, shown as
  ``Err`` (table) or an empty cell (CSV). Rows are ordered by net score, else by the count of
  the first value in sorted order (count mode), or by mean (numeric mode), highest first, ties
  in the order groups first appear. Raises ``AnalysisEmpty`` when there is nothing to analyse.
- ``render(result, fmt=None) -> str``: the text Octobatch's script produces (``fmt`` defaults
  to the spec's ``--output-format``). Tables: a title (default ``Results Analysis`` /
  ``Numeric Analysis``) underlined with ``=``, columns joined by `` | ``, percentages with one
  decimal, stats with two (min/max one), net scores signed, a total line and the top group.
  CSV (``\\r\\n`` line ends): ``Group,Total,<values...>[,Net]`` with fractions rounded to 2
  places, or ``Group,Count,Mean,Median,StdDev,Min,Max,<custom...>`` rounded to 2 (min/max
  1). Octobatch prints the text, so a captured output file ends with one more newline
  (``captured(text)``).
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

from octopipe.core.budget import Budget
from octopipe.core.expressions import Expression, compile_expression
from octopipe.errors import AnalysisArgsError, AnalysisEmpty, OctopipeError

Format = Literal["table", "csv"]
STAT_COLUMNS = ("Count", "Mean", "Median", "StdDev", "Min", "Max")
CUSTOM_STAT_NAMES = frozenset(
    ("data", "count", "mean", "median", "stdev", "variance", "min_val", "max_val", "sum_val")
)
"""What a ``--custom-stat`` expression may read (besides the safe builtins)."""
STAT_WIDTH = 8
ERRORS_SHOWN = 5
SCRIPT_NAME = "analyze_results.py"


@dataclass(frozen=True)
class CustomStat:
    name: str
    source: str
    expression: Expression | None  # None when the source does not compile
    problem: str | None = None  # why it does not compile


@dataclass(frozen=True)
class AnalysisSpec:
    group_by: str
    count_field: str | None = None
    numeric_field: str | None = None
    net_positive: tuple[str, ...] = ()
    net_negative: tuple[str, ...] = ()
    custom_stats: tuple[CustomStat, ...] = ()
    output_format: Format = "table"
    title: str | None = None
    output: str | None = None
    notes: tuple[str, ...] = ()  # arguments ignored with a warning (a bad --custom-stat)

    @property
    def field(self) -> str:
        return self.count_field or self.numeric_field or ""

    @property
    def shows_net(self) -> bool:
        return bool(self.net_positive or self.net_negative)


@dataclass(frozen=True)
class CountRow:
    group: str
    total: int
    counts: Mapping[str, int]
    net: int


@dataclass(frozen=True)
class Stats:
    count: int
    mean: float
    median: float
    stdev: float
    variance: float
    min_val: float
    max_val: float
    sum_val: float

    @classmethod
    def of(cls, data: Sequence[float]) -> Stats:
        two = len(data) >= 2
        return cls(
            count=len(data),
            mean=statistics.mean(data),
            median=statistics.median(data),
            stdev=statistics.stdev(data) if two else 0.0,
            variance=statistics.variance(data) if two else 0.0,
            min_val=min(data),
            max_val=max(data),
            sum_val=sum(data),
        )


@dataclass(frozen=True)
class NumericRow:
    group: str
    stats: Stats
    custom: tuple[float | None, ...]  # one per custom stat; None where it failed


@dataclass(frozen=True)
class AnalysisResult:
    spec: AnalysisSpec
    records: int  # records read
    skipped: int  # records without the group or the field (or not numeric)
    values: tuple[str, ...] = ()  # count mode: every value seen, sorted (the columns)
    count_rows: tuple[CountRow, ...] = ()
    numeric_rows: tuple[NumericRow, ...] = ()
    errors: tuple[str, ...] = field(default=())  # "group.Stat: why", in row order

    @property
    def total(self) -> int:
        if self.count_rows:
            return sum(r.total for r in self.count_rows)
        return sum(r.stats.count for r in self.numeric_rows)

    @property
    def notes(self) -> list[str]:
        """What Octobatch's script reports on stderr besides the table."""
        notes = list(self.spec.notes)
        if self.skipped:
            notes.append(
                f"Note: Skipped {self.skipped} results missing '{self.spec.group_by}' or "
                f"'{self.spec.field}' fields"
            )
        return notes


# --- arguments --------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise AnalysisArgsError(f"{SCRIPT_NAME}: {message}")


def _parser() -> _Parser:
    parser = _Parser(prog=SCRIPT_NAME, add_help=False)
    parser.add_argument("--group-by", required=True)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--count-field")
    mode.add_argument("--numeric-field")
    parser.add_argument("--net-positive", action="append", default=[])
    parser.add_argument("--net-negative", action="append", default=[])
    parser.add_argument("--custom-stat", action="append", default=[])
    parser.add_argument("--title")
    parser.add_argument("--output-format", choices=["table", "csv"], default="table")
    parser.add_argument("--output")
    return parser


def parse_analysis_args(argv: Sequence[str]) -> AnalysisSpec:
    """The analysis ``argv`` asks for (without the run folder); ``AnalysisArgsError`` if bad."""
    args = _parser().parse_args(list(argv))
    if (args.net_positive or args.net_negative) and not args.count_field:
        raise AnalysisArgsError(
            f"{SCRIPT_NAME}: --net-positive and --net-negative can only be used with --count-field"
        )
    if args.custom_stat and not args.numeric_field:
        raise AnalysisArgsError(
            f"{SCRIPT_NAME}: --custom-stat can only be used with --numeric-field"
        )
    stats, notes = _custom_stats(args.custom_stat)
    return AnalysisSpec(
        group_by=args.group_by,
        count_field=args.count_field,
        numeric_field=args.numeric_field,
        net_positive=tuple(args.net_positive),
        net_negative=tuple(args.net_negative),
        custom_stats=stats,
        output_format=args.output_format,
        title=args.title,
        output=args.output,
        notes=notes,
    )


def _custom_stats(texts: Sequence[str]) -> tuple[tuple[CustomStat, ...], tuple[str, ...]]:
    stats: list[CustomStat] = []
    notes: list[str] = []
    for text in texts:
        name, sep, source = text.partition("=")
        name, source = name.strip(), source.strip()
        if not sep:
            notes.append(
                f"Warning: Invalid custom stat format '{text}' - expected 'Name=Expression'"
            )
            continue
        if not name or not source:
            notes.append(f"Warning: Invalid custom stat '{text}' - name and expression required")
            continue
        try:
            stats.append(CustomStat(name, source, compile_expression(source)))
        except OctopipeError as exc:
            stats.append(CustomStat(name, source, None, exc.message))
    return tuple(stats), tuple(notes)


# --- analysis ---------------------------------------------------------------------------------


def analyze(records: Iterable[Mapping[str, Any]], spec: AnalysisSpec) -> AnalysisResult:
    """Group and aggregate ``records`` as ``spec`` says (see the module notes)."""
    if spec.count_field:
        return _counts(records, spec, spec.count_field)
    return _numbers(records, spec, spec.numeric_field or "")


def _counts(records: Iterable[Mapping[str, Any]], spec: AnalysisSpec, name: str) -> AnalysisResult:
    groups: dict[str, Counter[str]] = {}
    seen = skipped = 0
    for record in records:
        seen += 1
        group, value = record.get(spec.group_by), record.get(name)
        if group is None or value is None:
            skipped += 1
            continue
        groups.setdefault(str(group), Counter())[str(value)] += 1
    _check_found(seen, groups, spec)
    values = tuple(sorted({v for counts in groups.values() for v in counts}))
    positive = {v.lower() for v in spec.net_positive}
    negative = {v.lower() for v in spec.net_negative}
    rows = []
    for group, counts in groups.items():
        net = 0
        if spec.shows_net:
            for value, n in counts.items():
                if value.lower() in positive:
                    net += n
                elif value.lower() in negative:
                    net -= n
        rows.append(CountRow(group, sum(counts.values()), dict(counts), net))
    first = values[0] if values else ""
    rows.sort(key=lambda r: r.net if spec.shows_net else r.counts.get(first, 0), reverse=True)
    return AnalysisResult(spec, seen, skipped, values, count_rows=tuple(rows))


def _numbers(records: Iterable[Mapping[str, Any]], spec: AnalysisSpec, name: str) -> AnalysisResult:
    groups: dict[str, list[float]] = {}
    seen = skipped = 0
    for record in records:
        seen += 1
        group, value = record.get(spec.group_by), record.get(name)
        if group is None or value is None:
            skipped += 1
            continue
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            skipped += 1
            continue
        groups.setdefault(str(group), []).append(number)
    _check_found(seen, groups, spec)
    rows: list[NumericRow] = []
    errors: list[str] = []  # in the order the groups first appear, as Octobatch lists them
    for group, data in groups.items():
        stats = Stats.of(data)
        custom: list[float | None] = []
        for stat in spec.custom_stats:
            value, problem = _custom_value(stat, data, stats)
            custom.append(value)
            if problem is not None:
                errors.append(f"{group}.{stat.name}: {problem}")
        rows.append(NumericRow(group, stats, tuple(custom)))
    rows.sort(key=lambda r: r.stats.mean, reverse=True)
    return AnalysisResult(spec, seen, skipped, numeric_rows=tuple(rows), errors=tuple(errors))


def _check_found(seen: int, groups: Mapping[str, Any], spec: AnalysisSpec) -> None:
    if not seen:
        raise AnalysisEmpty("No results found to analyze.")
    if not groups:
        raise AnalysisEmpty(
            f"No results found with both '{spec.group_by}' and '{spec.field}' fields"
        )


def _custom_value(
    stat: CustomStat, data: list[float], stats: Stats
) -> tuple[float | None, str | None]:
    if stat.expression is None:
        return None, stat.problem
    namespace = {
        "data": list(data),
        "count": stats.count,
        "mean": stats.mean,
        "median": stats.median,
        "stdev": stats.stdev,
        "variance": stats.variance,
        "min_val": stats.min_val,
        "max_val": stats.max_val,
        "sum_val": stats.sum_val,
    }
    try:
        result = stat.expression.evaluate(namespace, Budget())
        return float(result), None
    except OctopipeError as exc:
        return None, exc.message
    except (TypeError, ValueError, OverflowError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


# --- rendering --------------------------------------------------------------------------------


def render(result: AnalysisResult, fmt: Format | None = None) -> str:
    """The analysis as Octobatch's script writes it (table or CSV)."""
    fmt = fmt or result.spec.output_format
    if result.count_rows:
        return _count_csv(result) if fmt == "csv" else _count_table(result)
    return _numeric_csv(result) if fmt == "csv" else _numeric_table(result)


def captured(text: str) -> str:
    """What a post-process step capturing the script's stdout stores (it prints the text)."""
    return text + "\n"


def _title(title: str | None, default: str) -> list[str]:
    shown = title or default
    return [f"\n{shown}", "=" * len(shown)]


def _net_text(net: int) -> str:
    return f"{net:+d}" if net != 0 else "0"


def _count_table(result: AnalysisResult) -> str:
    spec = result.spec
    rows = result.count_rows
    group_width = max(len("Group"), max((len(r.group) for r in rows), default=5))
    total_width = 6
    widths = {v: max(len(v), 8) for v in result.values}
    header_parts = [f"{'Group':<{group_width}}", f"{'Total':>{total_width}}"]
    header_parts += [f"{v:>{widths[v]}}" for v in result.values]
    if spec.shows_net:
        header_parts.append(f"{'Net':>8}")
    header = " | ".join(header_parts)
    separator = "-" * len(header)
    lines = [*_title(spec.title, "Results Analysis"), "", header, separator]
    for row in rows:
        parts = [f"{row.group:<{group_width}}", f"{row.total:>{total_width}}"]
        for value in result.values:
            share = row.counts.get(value, 0) / row.total * 100 if row.total > 0 else 0
            parts.append(f"{share:>{widths[value] - 1}.1f}%")
        if spec.shows_net:
            parts.append(f"{_net_text(row.net):>8}")
        lines.append(" | ".join(parts))
    lines += [separator, f"Total: {result.total} results"]
    if rows and spec.shows_net:
        lines.append(f"Top group by net: {rows[0].group} ({rows[0].net:+d})")
    lines.append("")
    return "\n".join(lines)


def _count_csv(result: AnalysisResult) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    header: list[Any] = ["Group", "Total", *result.values]
    if result.spec.shows_net:
        header.append("Net")
    writer.writerow(header)
    for row in result.count_rows:
        cells: list[Any] = [row.group, row.total]
        for value in result.values:
            share = row.counts.get(value, 0) / row.total if row.total > 0 else 0
            cells.append(round(share, 2))
        if result.spec.shows_net:
            cells.append(row.net)
        writer.writerow(cells)
    return out.getvalue()


def _numeric_table(result: AnalysisResult) -> str:
    spec = result.spec
    rows = result.numeric_rows
    group_width = max(len("Group"), max((len(r.group) for r in rows), default=5))
    custom_widths = [max(len(s.name), STAT_WIDTH) for s in spec.custom_stats]
    header_parts = [f"{'Group':<{group_width}}"]
    header_parts += [f"{c:>{STAT_WIDTH}}" for c in STAT_COLUMNS]
    header_parts += [
        f"{s.name:>{w}}" for s, w in zip(spec.custom_stats, custom_widths, strict=True)
    ]
    header = " | ".join(header_parts)
    separator = "-" * len(header)
    lines = [*_title(spec.title, "Numeric Analysis"), "", header, separator]
    w = STAT_WIDTH
    for row in rows:
        s = row.stats
        parts = [
            f"{row.group:<{group_width}}",
            f"{s.count:>{w}}",
            f"{s.mean:>{w}.2f}",
            f"{s.median:>{w}.2f}",
            f"{s.stdev:>{w}.2f}",
            f"{s.min_val:>{w}.1f}",
            f"{s.max_val:>{w}.1f}",
        ]
        for value, width in zip(row.custom, custom_widths, strict=True):
            parts.append(f"{'Err':>{width}}" if value is None else f"{value:>{width}.2f}")
        lines.append(" | ".join(parts))
    lines += [separator, f"Total: {result.total} results"]
    if rows:
        lines.append(f"Top group by mean: {rows[0].group} ({rows[0].stats.mean:.2f})")
    if result.errors:
        lines += ["", "Expression errors:"]
        lines += [f"  {e}" for e in result.errors[:ERRORS_SHOWN]]
        if len(result.errors) > ERRORS_SHOWN:
            lines.append(f"  ... and {len(result.errors) - ERRORS_SHOWN} more")
    lines.append("")
    return "\n".join(lines)


def _numeric_csv(result: AnalysisResult) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Group", *STAT_COLUMNS, *(s.name for s in result.spec.custom_stats)])
    for row in result.numeric_rows:
        s = row.stats
        cells: list[Any] = [
            row.group,
            s.count,
            round(s.mean, 2),
            round(s.median, 2),
            round(s.stdev, 2),
            round(s.min_val, 1),
            round(s.max_val, 1),
        ]
        cells += ["" if v is None else round(v, 2) for v in row.custom]
        writer.writerow(cells)
    return out.getvalue()


__all__ = [
    "AnalysisResult",
    "AnalysisSpec",
    "analyze",
    "captured",
    "parse_analysis_args",
    "render",
]
