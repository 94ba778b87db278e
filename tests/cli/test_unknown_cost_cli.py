"""Unknown stays unknown: a run whose calls have no known price shows "unknown" on every
surface (the run's progress and summary, status text and JSON, ps, report), never $0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.cli import octopipe, walk_copy


@pytest.fixture(scope="module")
def unpriced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    tmp = tmp_path_factory.mktemp("unknown")
    pipeline = walk_copy(tmp)
    runs = tmp / "runs"
    result = octopipe(
        "run", str(pipeline), "--realtime", "--provider", "fake", "--model", "house-model-7b",
        "--yes", "--run", "u", "--runs-dir", str(runs), cwd=tmp,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return tmp, runs, result.stdout + result.stderr


def _cli(unpriced: tuple[Path, Path, str], *args: str) -> str:
    tmp, runs, _ = unpriced
    result = octopipe(*args, "--runs-dir", str(runs), cwd=tmp)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_run_itself_says_unknown_never_zero(unpriced: tuple[Path, Path, str]) -> None:
    output = unpriced[2]
    assert "estimated cost (realtime, first attempts): unknown" in output
    assert "cost unknown (3 calls of unknown cost)" in output
    assert "at least $0.00" not in output


def test_status_json_cost_is_null(unpriced: tuple[Path, Path, str]) -> None:
    data = json.loads(_cli(unpriced, "status", "u", "--json"))
    assert data["cost_usd"] is None
    assert data["known_cost_usd"] == 0.0
    assert data["unknown_cost_attempts"] > 0


def test_status_text_says_unknown(unpriced: tuple[Path, Path, str]) -> None:
    out = _cli(unpriced, "status", "u")
    assert "cost unknown" in out and "$0.00" not in out


def test_ps_says_unknown(unpriced: tuple[Path, Path, str]) -> None:
    out = _cli(unpriced, "ps")
    row = next(line for line in out.splitlines() if line.lstrip().startswith("u "))
    assert "unknown" in row and "$0.00" not in out


def test_report_says_unknown(unpriced: tuple[Path, Path, str]) -> None:
    data = json.loads(_cli(unpriced, "report", "u", "--json"))
    assert data["total"]["cost"]["unknown_cost_calls"] > 0
    assert data["cost_per_valid_unit"] is None
    text = _cli(unpriced, "report", "u")
    assert "unknown" in text and "$0.00" not in text
