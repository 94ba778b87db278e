"""The terminal and Markdown views of a report: unknown costs say so, bars add up, untrusted
text is shown as text."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from octopipe.cli.report_view import apportion, clean, md, print_report, report_markdown
from octopipe.engine.report import run_report
from support.report_runs import build


def rendered(report: object) -> str:
    out = io.StringIO()
    print_report(report, Console(file=out, width=220, color_system=None))  # type: ignore[arg-type]
    return out.getvalue()


def test_unknown_prices_are_shown_as_unknown_never_as_zero(tmp_path: Path) -> None:
    report = run_report(build(tmp_path, unpriced=True))
    text = rendered(report)
    judge = next(
        line for line in text.splitlines() if line.startswith("judge ") and "openai/" in line
    )
    assert judge.split().count("unknown") == 3  # cost, retry cost, cost per valid unit
    run_row = next(line for line in text.splitlines() if line.startswith("run "))
    assert run_row.split()[-3:] == ["unknown", "unknown", "unknown"]
    assert "$0.00" not in judge and "$0.00" not in run_row
    markdown = report_markdown(report)
    assert "| **run** |" in markdown and "| unknown | unknown | unknown |" in markdown


def test_partly_priced_costs_say_what_is_known_and_that_more_is_unknown(tmp_path: Path) -> None:
    report = run_report(build(tmp_path))
    run_row = next(line for line in rendered(report).splitlines() if line.startswith("run "))
    assert "+ unknown" in run_row and run_row.rstrip().endswith("unknown")


@pytest.mark.parametrize(
    ("counts", "cells", "shares"),
    [
        ((196, 2, 0, 2), 24, [22, 1, 0, 1]),
        ((7, 2, 0, 0), 22, [17, 5, 0, 0]),
        ((1, 1, 1, 1), 2, [1, 1, 0, 0]),
        ((0, 0, 0, 0), 10, [0, 0, 0, 0]),
        ((5, 0, 0, 0), 24, [24, 0, 0, 0]),
    ],
)
def test_bar_cells_add_up_and_every_state_present_shows(
    counts: tuple[int, ...], cells: int, shares: list[int]
) -> None:
    assert apportion(counts, cells) == shares
    assert sum(shares) == (cells if sum(counts) else 0)


def test_untrusted_text_is_made_printable_and_markdown_inert() -> None:
    assert clean("a\x1b[2Jb\x07\u202ec\nd") == "a\\x1b[2Jb\\x07\\u202ec\\x0ad"
    assert clean({"k": 1}) == '{"k": 1}'
    assert md("![x](http://h/i.png) <b>|") == "\\!\\[x\\](http://h/i.png) \\<b\\>\\|"
