"""The built-in analysis: arguments refused as Octobatch refuses them, custom stats in the safe
expression language, failures per group, nothing to analyse."""

from __future__ import annotations

import pytest

from octopipe.core.analysis import analyze, parse_analysis_args, render
from octopipe.errors import AnalysisArgsError, AnalysisEmpty

RECORDS = [
    {"g": "a", "x": 1, "r": "win"},
    {"g": "a", "x": 3, "r": "loss"},
    {"g": "b", "x": 0, "r": "win"},
]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: --group-by"),
        (["--group-by", "g"], "one of the arguments --count-field --numeric-field is required"),
        (["--group-by", "g", "--count-field", "r", "--numeric-field", "x"], "not allowed with"),
        (["--group-by", "g", "--numeric-field", "x", "--net-positive", "win"], "--count-field"),
        (["--group-by", "g", "--count-field", "r", "--custom-stat", "S=1"], "--numeric-field"),
        (["--group-by", "g", "--count-field", "r", "--output-format", "xml"], "invalid choice"),
        (["--group-by", "g", "--count-field", "r", "extra"], "unrecognized arguments: extra"),
    ],
)
def test_bad_arguments_are_refused_with_the_scripts_reason(argv, message) -> None:
    with pytest.raises(AnalysisArgsError, match=r"analyze_results\.py: ") as info:
        parse_analysis_args(argv)
    assert message in info.value.message


def test_a_custom_stat_without_a_name_is_skipped_with_octobatchs_warning() -> None:
    spec = parse_analysis_args(
        [
            "--group-by",
            "g",
            "--numeric-field",
            "x",
            "--custom-stat",
            "nothing",
            "--custom-stat",
            "=1",
        ]
    )
    assert spec.custom_stats == ()
    assert spec.notes == (
        "Warning: Invalid custom stat format 'nothing' - expected 'Name=Expression'",
        "Warning: Invalid custom stat '=1' - name and expression required",
    )


def test_custom_stats_run_in_the_safe_language_and_fail_per_group() -> None:
    spec = parse_analysis_args(
        [
            "--group-by", "g", "--numeric-field", "x",
            "--custom-stat", "Inv=1 / mean",
            "--custom-stat", "Esc=__import__('os').getpid()",
            "--custom-stat", "Rng=max_val - min_val",
        ]
    )  # fmt: skip
    result = analyze(RECORDS, spec)
    by_group = {row.group: row.custom for row in result.numeric_rows}
    assert by_group["a"][0] == 0.5 and by_group["a"][2] == 2.0
    assert by_group["b"][0] is None  # division by zero for group b only
    assert by_group["a"][1] is None and by_group["b"][1] is None  # refused, never run
    assert [e.split(":")[0] for e in result.errors] == ["a.Esc", "b.Inv", "b.Esc"]
    table = render(result)
    assert "Expression errors:" in table and "  b.Inv: " in table
    assert sum(line.count(" Err") for line in table.splitlines()[6:8]) == 3
    csv_text = render(result, "csv")
    assert csv_text.splitlines()[2] == "b,1,0.0,0.0,0.0,0.0,0.0,,,0.0"


def test_more_than_five_errors_are_summed_up() -> None:
    records = [{"g": str(i), "x": 0} for i in range(7)]
    spec = parse_analysis_args(
        ["--group-by", "g", "--numeric-field", "x", "--custom-stat", "E=1/0"]
    )
    table = render(analyze(records, spec))
    assert table.count("  E: ") == 0 and table.count(".E: ") == 5 and "  ... and 2 more" in table


def test_nothing_to_analyse_is_an_error_naming_why() -> None:
    spec = parse_analysis_args(["--group-by", "g", "--count-field", "missing"])
    with pytest.raises(AnalysisEmpty, match="No results found to analyze"):
        analyze([], spec)
    with pytest.raises(AnalysisEmpty, match="with both 'g' and 'missing' fields"):
        analyze(RECORDS, spec)
