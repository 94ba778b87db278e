"""The first commands a user types: --version, validate, units, try."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from octopipe import __version__
from octopipe.cli import cli
from octopipe.cli.output import run_guarded
from support.paths import EXAMPLES, line_of

OCTOPIPE = str(Path(sys.executable).with_name("octopipe"))


def octopipe(*args: str | Path) -> tuple[int, str, str]:
    """Run the real console script: exit code, stdout, stderr."""
    done = subprocess.run(
        [OCTOPIPE, *map(str, args)], capture_output=True, text=True, check=False, timeout=120
    )
    return done.returncode, done.stdout, done.stderr


def test_version_and_help() -> None:
    code, out, _ = octopipe("--version")
    assert code == 0 and __version__ in out
    result = CliRunner().invoke(cli, ["--help"])
    for command in ("validate", "units", "try", "init", "run", "status", "ps"):
        assert command in result.output


def test_validate_ok_prints_summary() -> None:
    code, out, _ = octopipe("validate", EXAMPLES / "persona_panel")
    assert code == 0
    assert "OK persona_panel: 36 units, 2 steps" in out
    assert "judge" in out and "36" in out


def test_validate_json_summary() -> None:
    code, out, _ = octopipe("validate", EXAMPLES / "card_game", "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and data["units"] == 150
    assert [(s["name"], s["kind"], s["calls"]) for s in data["steps"]] == [
        ("deal", "expression", 0),
        ("play", "llm", 150),
        ("check_play", "expression", 0),
        ("check_strategy", "expression", 0),
    ]
    assert data["problems"] == []


def test_validate_broken_pipeline_names_file_line_and_key(example_copy) -> None:
    folder = example_copy("random_walk", lambda t: t.replace("loop_until:", "loop_untill:"))
    code, out, err = octopipe("validate", folder)
    assert code == 2 and "OK" not in out
    line = line_of(folder, "loop_untill")
    assert (
        f"config.yaml:{line} [pipeline.steps[0].loop_untill]: unknown key 'loop_untill' "
        "(did you mean 'loop_until'?)" in err
    )
    assert "Traceback" not in err


def test_validate_broken_pipeline_json(example_copy) -> None:
    folder = example_copy(
        "random_walk", lambda t: t.replace('moves: "moves + 1"', 'moves: "movez + 1"')
    )
    code, out, _ = octopipe("validate", folder, "--json")
    data = json.loads(out)
    assert code == 2 and data["ok"] is False
    [problem] = data["problems"]
    assert problem["key_path"] == "pipeline.steps[0].expressions.moves"
    assert problem["hint"] == "moves"
    assert problem["line"] == line_of(folder, "movez")


def test_units_streams_jsonl_with_max_units_and_repeat() -> None:
    code, out, _ = octopipe("units", EXAMPLES / "card_game", "--max-units", "5", "--repeat", "2")
    assert code == 0
    units = [json.loads(line) for line in out.splitlines()]
    assert [u["unit_id"] for u in units] == [
        "careful__rep0000",
        "steady__rep0000",
        "daring__rep0000",
        "careful__rep0001",
        "steady__rep0001",
    ]
    assert units[0]["stop_at"] == 13


def test_try_runs_local_steps_and_stops_at_the_llm_step() -> None:
    code, out, _ = octopipe("try", EXAMPLES / "card_game", "--unit", "careful__rep0003", "--json")
    data = json.loads(out)
    assert code == 0
    deal, play = data["steps"]
    assert deal["step"] == "deal" and len(deal["output"]["opening"]) == 2
    assert play["step"] == "play" and 'Your strategy ("careful")' in play["prompt"]
    assert "waiting_for" in play


def _walk_answer(tmp_path: Path, right: bool) -> tuple[Path, dict]:
    code, out, _ = octopipe("try", EXAMPLES / "random_walk", "--unit", "middle__rep0007", "--json")
    assert code == 0
    walk = json.loads(out)["steps"][0]["output"]
    moves = walk["moves"] if right else walk["moves"] + 2
    answer = {
        "end_square": str(walk["square"]),  # a numeric string: coerced to an integer
        "move_count": moves,
        "ending": "HOME" if walk["square"] == 10 else "Lost",
    }
    path = tmp_path / "answer.json"
    path.write_text("Here you go:\n```json\n" + json.dumps(answer) + "\n```")
    return path, walk


def test_try_validates_a_given_answer_as_a_run_would(tmp_path: Path) -> None:
    answer, walk = _walk_answer(tmp_path, right=True)
    code, out, _ = octopipe(
        "try", EXAMPLES / "random_walk", "--unit", "middle__rep0007", "--response", answer, "--json"
    )
    data = json.loads(out)
    assert code == 0 and data["ok"] is True
    report = data["steps"][1]["output"]
    assert report["end_square"] == walk["square"]  # coerced from "10"/"0" to an int
    assert report["ending"] in ("home", "lost")  # enum case normalised


def test_try_prints_structured_errors_for_a_wrong_answer(tmp_path: Path) -> None:
    answer, _ = _walk_answer(tmp_path, right=False)
    code, out, _ = octopipe(
        "try", EXAMPLES / "random_walk", "--unit", "middle__rep0007", "--response", answer, "--json"
    )
    data = json.loads(out)
    assert code == 1 and data["ok"] is False
    failure = data["steps"][1]["failure"]
    assert failure["stage"] == "rules"
    assert [e["rule"] for e in failure["errors"]] == ["moves_match_walk"]


def test_try_unknown_unit_is_a_usage_error() -> None:
    code, _, err = octopipe("try", EXAMPLES / "random_walk", "--unit", "nope")
    assert code == 2 and "no unit 'nope'" in err


def test_errors_map_to_exit_codes_without_tracebacks(tmp_path: Path) -> None:
    assert run_guarded(cli, ["status", "missing-run", "--runs-dir", str(tmp_path)]) == 2


def test_bad_timeout_is_refused_before_any_run_is_created(tmp_path: Path) -> None:
    code, _, err = octopipe(
        "run",
        EXAMPLES / "random_walk",
        "--provider",
        "fake",
        "--yes",
        "--timeout",
        "5x",
        "--runs-dir",
        tmp_path / "runs",
    )
    assert code == 2 and "cannot read duration '5x'" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
