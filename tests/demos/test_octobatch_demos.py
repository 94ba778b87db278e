"""Octobatch's three demos, unchanged and used by path, from ``validate`` to the end of their
post-processing, in realtime and in batch, against the emulator of each vendor.

The emulator answers with our hooks (``tests/fixtures/demo_answers/``, named with
``--answers``). Every unit must end valid, every ``output:`` file must be in
``runs/NAME/outputs/`` and named in the end-of-run summary, and its numbers must be the ledger's
(read here straight from ``ledger.db``, not from the outputs). Never skipped in CI: without
``../shared/octobatch-demos`` the tests fail there (``conftest.demo``).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from support.paths import ROOT, demo

HOOKS = ROOT / "tests" / "fixtures" / "demo_answers"
RUN_TIMEOUT_S = 600

# (demo, mode, provider, extra flags): each vendor's wire format in both modes across the demos.
CASES = [
    ("DrunkenSailor", "--realtime", "fake", []),
    ("DrunkenSailor", "--batch", "fake:gemini", []),
    ("Blackjack", "--realtime", "fake:anthropic", ["--max-units", "150"]),
    ("Blackjack", "--batch", "fake", ["--max-units", "150"]),
    ("NPCDialog", "--realtime", "fake:gemini", ["--allow-scripts"]),
    ("NPCDialog", "--batch", "fake:anthropic", ["--allow-scripts"]),
]
HOOK_OF = {
    "DrunkenSailor": "drunken_sailor.py",
    "Blackjack": "blackjack.py",
    "NPCDialog": "npc_dialog.py",
}


def octopipe(
    cwd: Path, *args: str, timeout: float = RUN_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCTOPIPE_")}
    env["HOME"] = str(cwd)
    return subprocess.run(
        [sys.executable, "-m", "octopipe", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- reading the ledger directly ------------------------------------------------------------------


class LedgerFacts:
    """Straight SQL over ledger.db: the truth the outputs are checked against."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        self.steps = [r[0] for r in self.db.execute("SELECT name FROM steps ORDER BY idx")]

    def records(self, step: str) -> list[dict[str, Any]]:
        """Units valid at ``step`` with every field they carry by then (fields + deltas)."""
        index = self.steps.index(step)
        rows = self.db.execute(
            """SELECT u.uid, u.unit_id, u.fields_json FROM units u JOIN unit_steps s
               ON s.uid = u.uid AND s.step_idx = ? AND s.state = 'valid' ORDER BY u.uid""",
            (index,),
        ).fetchall()
        out = []
        for uid, unit_id, fields in rows:
            record = {"unit_id": unit_id, **json.loads(fields)}
            for (delta,) in self.db.execute(
                """SELECT output_json FROM unit_steps WHERE uid = ? AND step_idx <= ?
                   AND state = 'valid' ORDER BY step_idx""",
                (uid, index),
            ):
                record.update(json.loads(delta or "{}"))
            out.append(record)
        return out

    def states(self) -> Counter[tuple[str, str]]:
        return Counter(
            (self.steps[i], s) for i, s in self.db.execute("SELECT step_idx, state FROM unit_steps")
        )

    def failed_attempts(self) -> Counter[str]:
        return Counter(
            unit_id
            for (unit_id,) in self.db.execute(
                """SELECT u.unit_id FROM attempts a JOIN units u ON u.uid = a.uid
                   WHERE a.outcome != 'valid'"""
            )
        )

    def post_runs(self) -> dict[str, tuple[str, str | None]]:
        return {
            name: (outcome, output)
            for name, outcome, output in self.db.execute(
                """SELECT name, outcome, output FROM post_runs WHERE id IN
                   (SELECT MAX(id) FROM post_runs GROUP BY action)"""
            )
        }


def table_rows(text: str) -> dict[str, list[str]]:
    """The data rows of an analysis table: group -> its cells after the group."""
    lines = text.splitlines()
    separators = [i for i, line in enumerate(lines) if line and set(line) == {"-"}]
    rows = {}
    for line in lines[separators[0] + 1 : separators[1]]:
        cells = [c.strip() for c in line.split(" | ")]
        rows[cells[0]] = cells[1:]
    return rows


def header(text: str) -> list[str]:
    lines = text.splitlines()
    first_separator = next(i for i, line in enumerate(lines) if line and set(line) == {"-"})
    return [c.strip() for c in lines[first_separator - 1].split(" | ")]


def check_counts(text: str, records: list[dict[str, Any]], group: str, field: str) -> None:
    """Totals and percentages per group, each one recomputed from the ledger's records."""
    by_group: dict[str, Counter[str]] = defaultdict(Counter)
    for r in records:
        by_group[str(r[group])][str(r[field])] += 1
    columns = header(text)[2:]
    rows = table_rows(text)
    assert set(rows) == set(by_group)
    for name, counts in by_group.items():
        total = sum(counts.values())
        assert int(rows[name][0]) == total, name
        for value, cell in zip(columns, rows[name][1:], strict=False):
            if value == "Net":
                continue
            assert cell == f"{counts.get(value, 0) / total * 100:.1f}%", (name, value)


def check_means(text: str, records: list[dict[str, Any]], group: str, field: str) -> None:
    by_group: dict[str, list[float]] = defaultdict(list)
    for r in records:
        by_group[str(r[group])].append(float(r[field]))
    rows = table_rows(text)
    assert set(rows) == set(by_group)
    for name, data in by_group.items():
        count, mean, median, *_ = rows[name]
        assert (int(count), mean, median) == (
            len(data),
            f"{statistics.mean(data):.2f}",
            f"{statistics.median(data):.2f}",
        ), name


# --- the demos ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Blackjack", "DrunkenSailor", "NPCDialog"])
def test_validate_reports_no_error(tmp_path: Path, name: str) -> None:
    result = octopipe(tmp_path, "validate", demo(name), "--json", timeout=120)
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr
    assert report["ok"] is True
    assert [p for p in report["problems"] if p["level"] == "error"] == []


@pytest.mark.parametrize(("name", "mode", "provider", "extra"), CASES, ids=lambda v: str(v))
def test_demo_runs_to_the_end_of_its_post_processing(
    tmp_path: Path, name: str, mode: str, provider: str, extra: list[str]
) -> None:
    run = f"{name.lower()}{mode.replace('-', '_')}"
    result = octopipe(
        tmp_path,
        "run", demo(name), mode, "--provider", provider, "--answers", HOOKS / HOOK_OF[name],
        "--yes", "--quiet", "--run", run, *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    folder = tmp_path / "runs" / run
    facts = LedgerFacts(folder / "ledger.db")
    states = facts.states()
    assert {state for _, state in states} == {"valid"}, states  # every unit valid at every step
    config_outputs = _outputs_of(demo(name))
    posts = facts.post_runs()
    assert {n: o for n, (o, _) in posts.items()} == {n: "ok" for n in _post_names(demo(name))}
    for output in config_outputs:
        path = folder / "outputs" / output
        assert path.is_file(), output
        assert str(path) in result.stdout, output  # named in the end-of-run summary
    status = json.loads(octopipe(tmp_path, "status", run, "--json", timeout=60).stdout)
    assert {p["name"]: (p["state"], p["stale"]) for p in status["post"]} == {
        n: ("ok", False) for n in posts
    }
    CHECKS[name](folder, facts)


def _post_names(folder: Path) -> list[str]:
    import yaml

    config = yaml.safe_load((folder / "config.yaml").read_text())
    return [p["name"] for p in config["post_process"]]


def _outputs_of(folder: Path) -> list[str]:
    import yaml

    config = yaml.safe_load((folder / "config.yaml").read_text())
    return [p["output"] for p in config["post_process"] if p.get("output")]


def check_blackjack(folder: Path, facts: LedgerFacts) -> None:
    outputs = folder / "outputs"
    records = facts.records("analyze_difficulty")
    comparison = (outputs / "strategy_comparison.txt").read_text()
    check_counts(comparison, records, "strategy_name", "result")
    by_strategy: dict[str, Counter[str]] = defaultdict(Counter)
    for r in records:
        by_strategy[r["strategy_name"]][r["result"]] += 1
    nets = {s: c["player_wins"] - c["dealer_wins"] for s, c in by_strategy.items()}
    for strategy, cells in table_rows(comparison).items():
        assert cells[-1] == (f"{nets[strategy]:+d}" if nets[strategy] else "0")
    best = max(nets.values())
    assert re.search(rf"Top group by net: .+ \({best:+d}\)", comparison)
    check_counts(
        (outputs / "difficulty_analysis.txt").read_text(), records, "strategy_name", "difficulty"
    )
    csv_lines = (outputs / "results.csv").read_text().splitlines()
    assert csv_lines[0].split(",") == [
        "Group",
        "Total",
        *sorted({r["result"] for r in records}),
        "Net",
    ]
    for line in csv_lines[1:]:
        if line:
            group, total, *_, net = line.split(",")
            assert (int(total), int(net)) == (sum(by_strategy[group].values()), nets[group])
    # the gzip step compressed the Octobatch view; its records are the ledger's
    plain = list((folder / "chunks").glob("*/*_validated.jsonl"))
    assert plain == []
    for step in facts.steps:
        lines = []
        for path in sorted((folder / "chunks").glob(f"*/{step}_validated.jsonl.gz")):
            lines += gzip.decompress(path.read_bytes()).decode().splitlines()
        assert sorted(json.loads(line)["unit_id"] for line in lines) == sorted(
            r["unit_id"] for r in facts.records(step)
        )


def check_drunken_sailor(folder: Path, facts: LedgerFacts) -> None:
    outputs = folder / "outputs"
    records = facts.records("analyze")
    assert len(records) == 100
    for r in records:  # the hook read the walk: the analysis is about the real walks
        assert r["final_position"] == r["position"]
    check_counts(
        (outputs / "outcome_distribution.txt").read_text(), records, "scenario_name", "outcome"
    )
    check_means(
        (outputs / "steps_by_scenario.txt").read_text(), records, "scenario_name", "steps_taken"
    )
    check_means((outputs / "steps_by_outcome.txt").read_text(), records, "outcome", "steps_taken")


def check_npc_dialog(folder: Path, facts: LedgerFacts) -> None:
    outputs = folder / "outputs"
    records = facts.records("score_consistency")
    assert len(records) == 60
    check_counts((outputs / "tone_distribution.txt").read_text(), records, "npc_name", "final_tone")
    check_means(
        (outputs / "personality_scores.txt").read_text(),
        records,
        "npc_name",
        "personality_consistency",
    )
    check_means(
        (outputs / "mood_scores.txt").read_text(), records, "npc_name", "mood_responsiveness"
    )
    retries = facts.failed_attempts()
    assert retries, "the hook gets some answers wrong on first sight"
    text = (outputs / "retry_analysis.txt").read_text()
    assert f"Total retries: {sum(retries.values())} across {len(retries)} units" in text
    printed = {}
    for line in text.splitlines():
        found = re.fullmatch(r"(\S+)\s+(\d+)", line)
        if found:
            printed[found.group(1)] = int(found.group(2))
    assert printed == dict(
        retries
    )  # NPCDialog's own script, reading the view, counted the ledger's
    assert (outputs / "results.csv").read_text().splitlines()[0].startswith("Group,Total,")


CHECKS = {
    "Blackjack": check_blackjack,
    "DrunkenSailor": check_drunken_sailor,
    "NPCDialog": check_npc_dialog,
}


def test_npc_dialogs_script_is_skipped_without_allow_scripts(tmp_path: Path) -> None:
    result = octopipe(
        tmp_path,
        "run", demo("NPCDialog"), "--provider", "fake", "--answers", HOOKS / "npc_dialog.py",
        "--yes", "--quiet", "--run", "npc",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    folder = tmp_path / "runs" / "npc"
    assert not (folder / "outputs" / "retry_analysis.txt").exists()
    assert not (folder / "chunks").exists()  # no folder code to feed, so no view either
    posts = LedgerFacts(folder / "ledger.db").post_runs()
    assert posts["Retry Analysis"] == ("skipped", "outputs/retry_analysis.txt")
    assert re.search(r"Retry Analysis +skipped +folder code, not allowed", result.stdout)
    assert "octopipe post npc --allow-script 'Retry Analysis'" in result.stdout
    script = demo("NPCDialog").resolve() / "post_process.py"
    assert f"{folder.resolve() / 'config' / 'post_process.py'} {folder.resolve()}" in result.stdout
    assert str(script) not in result.stdout  # it would run from the snapshot, not the demo
    again = octopipe(tmp_path, "post", "npc", "--allow-script", "Retry Analysis", timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert LedgerFacts(folder / "ledger.db").post_runs()["Retry Analysis"][0] == "ok"
    assert "Total retries:" in (folder / "outputs" / "retry_analysis.txt").read_text()
