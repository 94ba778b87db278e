"""A pipeline of local steps runs without loading the price database: it makes no LLM call,
so it records no price source and never imports genai_prices (nor its HTTP client). Nor does
it import what only prompts and schemas need (Jinja, jsonschema, regex): start-up time is
part of what a user waits for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from octopipe.cli import GC_THRESHOLDS

PIPELINE = Path(__file__).resolve().parents[2] / "bench" / "pipelines" / "walk3local"

_PROBE = """
import gc, sys
from octopipe.cli import main
try:
    main(sys.argv[1:])
except SystemExit as done:
    code = done.code
print({"code": code, "prices": "genai_prices" in sys.modules, "httpx2": "httpx2" in sys.modules})
print(sorted(m for m in ("jinja2", "jsonschema", "regex", "openai") if m in sys.modules))
print((gc.get_threshold(), gc.isenabled()))
"""


def _octopipe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, check=False
    )


def test_a_local_only_run_skips_the_price_database(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    done = _octopipe("run", str(PIPELINE), "--repeat", "20", "--yes", "-q", "--runs-dir", str(runs))
    *_, verdict, heavy, _ = done.stdout.strip().splitlines()
    assert verdict == str({"code": 0, "prices": False, "httpx2": False}), done.stderr
    assert heavy == "[]"
    (run,) = [p.name for p in runs.iterdir()]
    info = subprocess.run(
        [
            Path(sys.executable).with_name("octopipe"),
            "info",
            run,
            "--json",
            "--runs-dir",
            str(runs),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "prices" not in json.loads(info.stdout)["options"]


def test_the_command_runs_the_cyclic_collector_rarely(tmp_path: Path) -> None:
    """The collector's passes were ~7 % of a local run (see ``tune_gc``): the command's process
    runs with the raised thresholds, and cycles are still collected."""
    runs = tmp_path / "runs"
    done = _octopipe("run", str(PIPELINE), "--repeat", "5", "--yes", "-q", "--runs-dir", str(runs))
    assert done.stdout.strip().splitlines()[-1] == str((GC_THRESHOLDS, True)), done.stderr
