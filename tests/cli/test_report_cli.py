"""``octopipe report`` and ``octopipe compare`` as a user runs them, on runs made by ``octopipe
run --provider fake`` with an answer hook that fails known units: every figure of ``--json``
equals the independent computation of ``report_oracle``, and the known outcomes are the ones
reported, in the terminal, in Markdown and in JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.report_oracle import assert_matches, expected_report

CONFIG = """
pipeline:
  name: graded
  steps:
    - name: prep
      scope: expression
      expressions:
        target: "10 // (n - 3)"
    - name: grade
      prompt_template: grade.jinja2
processing:
  strategy: direct
  items:
    source: items.yaml
    key: items
    name_field: name
  validation_retry:
    max_attempts: 3
prompts:
  template_dir: templates
schemas:
  schema_dir: schemas
  files:
    grade: grade.json
validation:
  grade:
    required: [score]
    rules:
      - name: high_enough
        expr: "score >= 5"
        error: "score {score} is below 5"
"""

# bad01 and bad06 always score 1 (failed after 3 attempts); flaky02/05/08 score 2 the first
# time, then 9; the others score 9. good03 never gets there: 10 // (3 - 3) fails at prep.
HOOK = """
import re
SEEN = {}
def answer(request):
    name = re.search(r"Grade (\\w+)", request.prompt).group(1)
    SEEN[name] = SEEN.get(name, 0) + 1
    if name.startswith("bad"):
        return {"score": 1}
    if name.startswith("flaky") and SEEN[name] == 1:
        return {"score": 2}
    return {"score": 9}
"""

KINDS = {1: "bad", 6: "bad", 2: "flaky", 5: "flaky", 8: "flaky"}
CATEGORIES = ("fruit", "veg", "grain")


@dataclass
class Runs:
    work: Path
    runs: Path
    hook: Path

    def octopipe(self, *args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCTOPIPE_")}
        env.update({"NO_COLOR": "1", "COLUMNS": "200"})
        return subprocess.run(
            [sys.executable, "-m", "octopipe", *map(str, args), "--runs-dir", str(self.runs)],
            cwd=self.work,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def report(self, *args: object) -> dict:
        done = self.octopipe("report", *args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def ledger(self, run: str) -> Path:
        return self.runs / run / "ledger.db"


def graded_pipeline(folder: Path) -> Path:
    (folder / "templates").mkdir(parents=True)
    (folder / "schemas").mkdir()
    (folder / "config.yaml").write_text(textwrap.dedent(CONFIG))
    lines = [
        f"  - {{name: {KINDS.get(i, 'good')}{i:02d}, n: {i}, category: {CATEGORIES[i % 3]}}}"
        for i in range(10)
    ]
    (folder / "items.yaml").write_text("items:\n" + "\n".join(lines) + "\n")
    (folder / "templates" / "grade.jinja2").write_text(
        "Grade {{ name }} ({{ category }}, {{ target }}).\n"
    )
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}
    (folder / "schemas" / "grade.json").write_text(json.dumps(schema))
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """``rt``: realtime against the emulator; ``bt``: the same in batch, Anthropic's wire."""
    work = tmp_path_factory.mktemp("report")
    pipeline = graded_pipeline(work / "graded")
    hook = work / "hook.py"
    hook.write_text(HOOK)
    made = Runs(work, work / "runs", hook)
    for name, flags in (
        ("rt", ["--realtime", "--provider", "fake"]),
        ("bt", ["--batch", "--provider", "fake:anthropic", "--poll-interval", "1"]),
    ):
        done = made.octopipe(
            "run", pipeline, *flags, "--answers", hook, "--yes", "--run", name, timeout=180
        )
        assert done.returncode == 0, done.stdout + done.stderr
    return made


@pytest.mark.parametrize("run", ["rt", "bt"])
def test_every_figure_of_report_json_equals_the_ledger(runs: Runs, run: str) -> None:
    assert_matches(runs.report(run), expected_report(runs.ledger(run)))


@pytest.mark.parametrize("run", ["rt", "bt"])
def test_report_json_says_what_the_hook_made_happen(runs: Runs, run: str) -> None:
    report = runs.report(run)
    prep, grade = report["steps"]
    assert (prep["input"], prep["valid"], prep["failed"]) == (10, 9, 1)
    assert prep["failed_by_stage"] == {"expression": 1}
    assert prep["errors"] == [
        {
            "stage": "expression",
            "message": "ZeroDivisionError: integer division or modulo by zero",
            "units": 1,
            "samples": ["good03"],
        }
    ]
    assert (grade["input"], grade["valid"], grade["failed"], grade["retrying"]) == (9, 7, 2, 0)
    assert grade["failed_by_stage"] == {"rules": 2}
    assert grade["errors"] == [
        {
            "stage": "rules",
            "message": "score <n> is below <n>",
            "units": 2,
            "samples": ["bad01", "bad06"],
        }
    ]
    # bad: 3 failed attempts each; flaky: 1 each. Samples: the first and last unit of each
    # message ("score 1 ...": bad01, bad06; "score 2 ...": flaky02, flaky08), lowest first
    assert grade["attempt_errors"] == [
        {
            "stage": "rules",
            "message": "score <n> is below <n>",
            "attempts": 9,
            "samples": ["bad01", "flaky02", "bad06"],
        }
    ]
    assert grade["retries"]["units"] == 5 and grade["retries"]["extra_attempts"] == 7
    assert grade["first_attempt_pass_rate"] == round(4 / 9, 4)  # good00, 04, 07, 09
    assert grade["pass_rate"] == round(7 / 9, 4) and grade["yield"] == round(7 / 9, 4)
    assert grade["attempts"] == grade["total"]["calls"] == 16
    assert report["units_done"] == 10 and report["valid"] == 7 and report["failed"] == 3
    assert report["mode"] == ("realtime" if run == "rt" else "batch")
    assert report["total"]["cost"]["usd"] > 0  # the emulator's model has a price
    assert report["retries"]["cost"]["usd"] > 0
    share = report["retries"]["cost"]["usd"] / report["total"]["cost"]["usd"]
    assert report["retry_cost_share"] == pytest.approx(share, abs=1e-4)


def test_failures_by_an_item_field(runs: Runs) -> None:
    report = runs.report("rt", "--failures-by", "category")
    assert_matches(report, expected_report(runs.ledger("rt"), failures_by="category"))
    prep, grade = report["steps"]
    assert [(r["value"], r["failed"], r["units"]) for r in prep["failures_by"]] == [
        ("fruit", 1, 4),  # good03
        ("grain", 0, 3),
        ("veg", 0, 3),
    ]
    by_value = {r["value"]: (r["failed"], r["units"]) for r in grade["failures_by"]}
    assert by_value == {"veg": (1, 3), "fruit": (1, 3), "grain": (0, 3)}  # bad01, bad06


def test_the_terminal_view_shows_the_funnel_costs_and_errors_with_bars(runs: Runs) -> None:
    done = runs.octopipe("report", "rt", "--failures-by", "category")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("rt [graded] complete_with_failures; realtime; fake/gpt-6-luna\n")
    lines = out.splitlines()
    grade = next(line for line in lines if line.startswith("grade "))
    assert grade.split()[2:12] == [
        "9",
        "7",
        "2",
        "0",
        "0",
        "0",
        "77.8%",
        "77.8%",
        "44.4%",
        "█" * 17 + "▓" * 5,
    ]  # fmt: skip  (9 of the widest 10 units: 22 of 24 cells, 7 valid and 2 failed)
    assert "  prep: failed by stage: expression 1" in lines
    assert "top errors at grade (units failing now)" in lines
    row = next(line for line in lines if "score <n> is below <n>" in line)
    assert row.split()[0] == "2" and row.rstrip().endswith("bad01, bad06")
    assert "top errors at grade (failed attempts, retried or not)" in lines
    assert any(line.startswith("failures at grade by category") for line in lines)
    assert "unknown" not in out  # every call had a price


def test_markdown_tables(runs: Runs) -> None:
    done = runs.octopipe("report", "rt", "--markdown")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "# Report: rt"
    header = "| step | scope | input | valid | failed | retrying | in flight | pending |"
    assert any(line.startswith(header) for line in lines)
    assert any(
        line.startswith("| grade | chunk | 9 | 7 | 2 | 0 | 0 | 0 | 77.8% | 77.8% | 44.4% |")
        for line in lines
    )
    assert "| 2 | rules | score \\<n\\> is below \\<n\\> | bad01, bad06 |" in lines


def test_compare_puts_the_runs_side_by_side(runs: Runs) -> None:
    done = runs.octopipe("compare", "rt", "bt", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["steps"] == ["prep", "grade"]
    assert "analysis" not in data  # no analysis source: no such section
    for summary in data["runs"]:
        report = runs.report(summary["run"])
        assert summary["mode"] == report["mode"]
        assert summary["units"] == report["units"] == 10
        assert summary["valid"] == report["valid"] == 7
        assert summary["pass_rate"] == {s["name"]: s["pass_rate"] for s in report["steps"]}
        assert summary["retries"] == {"units": 5, "extra_attempts": 7}
        assert summary["input_tokens"] == report["total"]["input_tokens"]
        assert summary["cost"] == report["total"]["cost"]
        assert summary["cost_per_valid_unit"] == report["cost_per_valid_unit"]
        assert summary["elapsed_s"] == report["elapsed_s"]
    rt, bt = data["runs"]
    assert (rt["mode"], bt["mode"]) == ("realtime", "batch")
    # the same tokens at batch prices: half the realtime cost
    assert bt["cost"]["usd"] == pytest.approx(rt["cost"]["usd"] / 2)

    text = runs.octopipe("compare", "rt", "bt")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["rt", "bt"]
    assert next(line for line in lines if line.startswith("mode")).split() == [
        "mode", "realtime", "batch"
    ]  # fmt: skip
    assert next(line for line in lines if line.startswith("pass rate: grade")).split()[-2:] == [
        "77.8%", "77.8%"
    ]  # fmt: skip
    markdown = runs.octopipe("compare", "rt", "bt", "--markdown")
    assert "| mode | realtime | batch |" in markdown.stdout.splitlines()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("compare", "rt"), "error: compare needs at least two runs, got 1: rt"),
        (("report", "rt", "--json", "--markdown"), "error: --json and --markdown cannot be"),
        (("compare", "rt", "bt", "--json", "--markdown"), "error: --json and --markdown"),
        (("report", "nope"), "error: no run named 'nope' under "),
        (("compare", "rt", "nope"), "error: no run named 'nope' under "),
        (
            ("report", "rt", "--failures-by", "colour"),
            "error: --failures-by 'colour': neither the failing units' records nor the first "
            "unit's have that field (fields of the first unit: unit_id, name, n, category, "
            "target, score)",
        ),
        (("report", "rt", "--failures-by", 'a"b'), "error: --failures-by 'a\"b': a field"),
        (("report", "rt", "--top", "0"), "Invalid value for '--top'"),
    ],
)
def test_bad_requests_are_refused_with_a_message(
    runs: Runs, args: tuple[str, ...], message: str
) -> None:
    done = runs.octopipe(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""
