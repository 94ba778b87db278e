"""The seam for shared analysis tables in ``compare``: an ``AnalysisSource`` gives each run's
tables; those every run has (same key) come out merged on their group column; without a
source, or without a shared key, there is no analysis section."""

from __future__ import annotations

from pathlib import Path

from octopipe.engine.compare import AnalysisTable, merge_tables, shared_analyses
from octopipe.engine.paths import RunPaths

STRATEGIES = "analyze_results --group-by strategy --count-field outcome"


def table(key: str, rows: list[tuple[object, ...]]) -> AnalysisTable:
    return AnalysisTable(key, "Outcomes by strategy", ("strategy", "wins", "net"), tuple(rows))


def test_tables_of_the_same_analysis_are_merged_on_their_group() -> None:
    merged = merge_tables(
        [
            table(STRATEGIES, [("hit", 10, 2), ("stand", 7, -1)]),
            table(STRATEGIES, [("stand", 9, 3), ("double", 4, 0)]),
        ],
        ["gpt", "claude"],
    )
    assert merged.key == STRATEGIES and merged.title == "Outcomes by strategy"
    assert merged.columns == (
        "strategy",
        "wins [gpt]",
        "wins [claude]",
        "net [gpt]",
        "net [claude]",
    )
    assert merged.rows == (
        ("hit", 10, None, 2, None),
        ("stand", 7, 9, -1, 3),
        ("double", None, 4, None, 0),
    )


def test_only_analyses_every_run_has_are_shared(tmp_path: Path) -> None:
    a, b = RunPaths(tmp_path / "a"), RunPaths(tmp_path / "b")
    tables = {
        a: [table(STRATEGIES, [("hit", 1, 0)]), table("other", [("x", 1, 1)])],
        b: [table(STRATEGIES, [("hit", 2, 1)])],
    }
    shared = shared_analyses([a, b], ["a", "b"], lambda paths: tables[paths])
    assert [s.key for s in shared] == [STRATEGIES]
    assert shared[0].rows == (("hit", 1, 2, 0, 1),)
    assert shared_analyses([a, b], ["a", "b"], lambda paths: [] if paths == b else tables[a]) == []


def test_compare_fills_its_analysis_section_from_the_source(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from octopipe.cli.report_view import comparison_markdown, print_comparison
    from octopipe.engine.compare import compare_runs
    from support.report_runs import build

    a, b = build(tmp_path / "a"), build(tmp_path / "b")
    per_run = {a: [table(STRATEGIES, [("hit", 3, 1)])], b: [table(STRATEGIES, [("hit", 5, 2)])]}
    without = compare_runs([a, b])
    assert without.analyses == [] and "analysis" not in without.to_dict()

    with_source = compare_runs([a, b], analysis=lambda paths: per_run[paths])
    data = with_source.to_dict()
    assert data["analysis"] == [
        {
            "key": STRATEGIES,
            "title": "Outcomes by strategy",
            "columns": ["strategy", "wins [fixture]", "wins [fixture]", "net [fixture]",
                        "net [fixture]"],
            "rows": (("hit", 3, 5, 1, 2),),
        }
    ]  # fmt: skip
    markdown = comparison_markdown(with_source)
    assert "## Outcomes by strategy" in markdown
    assert "| hit | 3 | 5 | 1 | 2 |" in markdown.splitlines()
    out = io.StringIO()
    print_comparison(with_source, Console(file=out, width=200, color_system=None))
    assert "Outcomes by strategy" in out.getvalue()
