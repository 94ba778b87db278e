"""The million-unit run the 1M benchmarks share (``tools_1m``, ``report_1m``, ``tui_1m``): made
with ``octopipe init`` on ``pipelines/million`` as a subprocess, its first step (walk) then
passed for every unit in SQL; each benchmark sets the LLM step's outcome its own way."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OCTOPIPE = str(Path(sys.executable).with_name("octopipe"))
PIPELINE = HERE / "pipelines" / "million"


def timed(*args: str, check: bool = False) -> tuple[float, str]:
    """Wall seconds and stdout of ``octopipe ARGS``; with ``check`` a failure stops the bench."""
    start = time.perf_counter()
    done = subprocess.run([OCTOPIPE, *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise SystemExit(f"octopipe {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return time.perf_counter() - start, done.stdout


def init_run(runs: Path, name: str, units: int) -> float:
    """``octopipe init`` of ``units`` units as run ``name`` in ``runs``; its wall seconds."""
    seconds, _ = timed(
        "init",
        str(PIPELINE),
        "--run",
        name,
        "--runs-dir",
        str(runs),
        "--repeat",
        str(units),
        check=True,
    )
    return seconds


def pass_walk(db: sqlite3.Connection) -> None:
    """Every unit valid at step 0 (walk), with the output the LLM step reads."""
    db.execute(
        "UPDATE unit_steps SET state = 'valid', attempts = 1, output_json = '{\"pos\":3}' "
        "WHERE step_idx = 0"
    )
