"""`octopipe post`, `octopipe analyze`, `run --allow-scripts` and what `status`/`info` say about
post-processing, as a user types them (the real CLI in a child process, the emulator, no key)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from octopipe.core.analysis import analyze, captured, parse_analysis_args, render
from octopipe.engine.exports import valid_records
from octopipe.store.ledger import Ledger
from support.post import league
from support.realtime import EXAMPLES, octopipe_command, offline_env

pytestmark = pytest.mark.timeout(180)


def octopipe(*args: object, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*octopipe_command(), *map(str, args)],
        cwd=cwd,
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def records(run: Path) -> list[dict[str, Any]]:
    with Ledger.open(run / "ledger.db", readonly=True) as ledger:
        return list(valid_records(ledger, len(ledger.steps) - 1))


@pytest.fixture
def league_run(tmp_path: Path) -> Path:
    folder = league(tmp_path)
    done = octopipe("run", folder, "--yes", "--run", "lg", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    return tmp_path / "runs" / "lg"


def test_analyze_prints_the_analysis_of_a_runs_results(tmp_path: Path, league_run: Path) -> None:
    args = [
        "--group-by",
        "team",
        "--numeric-field",
        "points",
        "--custom-stat",
        "Spread=max_val-min_val",
    ]
    done = octopipe("analyze", "lg", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    expected = captured(render(analyze(records(league_run), parse_analysis_args(args))))
    assert done.stdout == expected
    csv_done = octopipe(
        "analyze", "lg", "--group-by", "team", "--count-field", "band", "--output-format", "csv",
        "--output", "bands.csv", cwd=tmp_path,
    )  # fmt: skip
    assert csv_done.returncode == 0 and "Output written to bands.csv" in csv_done.stderr
    assert (tmp_path / "bands.csv").read_bytes().decode().splitlines()[0] == "Group,Total,high,low"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--group-by", "team"], "one of the arguments --count-field --numeric-field is required"),
        (
            ["--group-by", "team", "--numeric-field", "points", "--net-positive", "x"],
            "--count-field",
        ),
        (["--count-field", "band"], "--group-by"),
    ],
)
def test_analyze_refuses_bad_options_with_the_reason(
    tmp_path: Path, league_run: Path, args: list[str], message: str
) -> None:
    done = octopipe("analyze", "lg", *args, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_analyze_of_a_field_no_record_has_exits_1(tmp_path: Path, league_run: Path) -> None:
    done = octopipe("analyze", "lg", "--group-by", "team", "--count-field", "nope", cwd=tmp_path)
    assert done.returncode == 1
    assert "No results found with both 'team' and 'nope' fields" in done.stderr


def test_post_reruns_says_what_ran_and_fails_with_a_failing_script(tmp_path: Path) -> None:
    folder = league(tmp_path)
    (folder / "tools" / "echo.py").write_text("import sys\nprint('bad')\nsys.exit(4)\n")
    assert octopipe("run", folder, "--yes", "--run", "lg", "-q", cwd=tmp_path).returncode == 0
    plain = octopipe("post", "lg", cwd=tmp_path)
    assert plain.returncode == 0, plain.stdout + plain.stderr  # the failing script is skipped
    assert "Echo" in plain.stdout and "skipped" in plain.stdout
    allowed = octopipe("post", "lg", "--allow-scripts", "--json", cwd=tmp_path)
    assert allowed.returncode == 1
    actions = {a["name"]: a for a in json.loads(allowed.stdout)["actions"]}
    assert (actions["Echo"]["outcome"], actions["Echo"]["exit_code"]) == ("failed", 4)
    assert actions["Bands"]["outcome"] == "ok"
    status = octopipe("status", "lg", cwd=tmp_path)
    assert status.returncode == 0
    assert "lg  complete" in status.stdout  # a failing script does not unmake the run
    assert (
        "Echo" in status.stdout and "failed" in status.stdout and "exit status 4" in status.stdout
    )
    info = json.loads(octopipe("info", "lg", "--json", cwd=tmp_path).stdout)
    assert {p["name"]: p["state"] for p in info["post"]}["Echo"] == "failed"
    stale_only = octopipe("post", "lg", "--stale-only", cwd=tmp_path)
    assert stale_only.returncode == 0 and "nothing to run" in stale_only.stdout


def test_a_run_started_with_scripts_allowed_asks_for_them_again(tmp_path: Path) -> None:
    folder = league(tmp_path)
    first = octopipe(
        "run", folder, "--yes", "--run", "lg", "-q", "--allow-script", "Echo", cwd=tmp_path
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "folder scripts that will run (allowed): Echo" in first.stdout
    assert "folder scripts that will be skipped: step_script" in first.stdout
    again = octopipe("run", "lg", cwd=tmp_path)
    assert again.returncode == 2
    assert "was started with --allow-script Echo" in again.stderr
    assert (
        "`octopipe run lg --allow-script Echo`" in again.stderr and "--skip-scripts" in again.stderr
    )
    skip = octopipe("run", "lg", "--skip-scripts", cwd=tmp_path)
    assert skip.returncode == 0, skip.stderr
    assert octopipe("run", "lg", cwd=tmp_path).returncode == 0  # recorded: no longer asked
    typo = octopipe("run", folder, "--yes", "--run", "lg2", "--allow-script", "Ech", cwd=tmp_path)
    assert (
        typo.returncode == 2 and "no folder script of this pipeline is called that" in typo.stderr
    )
    assert not (tmp_path / "runs" / "lg2").exists()


def test_revalidate_refreshes_the_analysis(tmp_path: Path) -> None:
    """random_walk on the emulator's generic answers: its rules turn most walks down, then
    relaxed rules and `revalidate --use-source-config` make them valid; the analysis the run's
    post_process asks for follows the ledger at once."""
    folder = tmp_path / "random_walk"
    shutil.copytree(EXAMPLES / "random_walk", folder)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["processing"]["repeat"] = 8
    config["api"]["retry"] = {"max_attempts": 2, "initial_delay_seconds": 0.05}
    config["processing"]["validation_retry"]["max_attempts"] = 1
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    done = octopipe("run", folder, "--provider", "fake", "--yes", "--run", "w", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "runs" / "w"
    before = len(records(run))
    assert before < 8
    config["validation"]["report"]["rules"] = []
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    again = octopipe("revalidate", "w", "--use-source-config", cwd=tmp_path)
    assert again.returncode in (0, 1), again.stdout + again.stderr
    now = records(run)
    assert len(now) > before
    spec = parse_analysis_args(["--group-by", "ending", "--count-field", "ending"])
    assert (run / "outputs" / "endings.txt").read_text() == captured(render(analyze(now, spec)))
    status = json.loads(octopipe("status", "w", "--json", cwd=tmp_path).stdout)
    assert [(p["name"], p["state"], p["stale"]) for p in status["post"]] == [
        ("endings", "ok", False)
    ]
