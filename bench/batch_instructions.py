"""Benchmark: instructions per unit of `octopipe run` in batch mode, counted by callgrind.

CPU seconds on a shared VM move by ±10% from one run to the next (the same code measured
twice in one hour here: 157 and 174 µs a unit), so a change of a few percent cannot be seen in
them. Valgrind's callgrind counts the instructions a process executes instead: the same for the
same code and inputs, whatever else the machine is doing. This script runs the pipeline of
``batch_1m.py`` at two sizes, ``octopipe init`` as usual and ``octopipe run`` under
``valgrind --tool=callgrind`` (about 50× slower; both sizes at once), and reports the difference per unit, the
cost that grows with the run, apart from what every run pays once (start-up, SDK imports):

    python bench/batch_instructions.py                       # 10,000 and 20,000 units
    python bench/batch_instructions.py --src /path/to/other/checkout/src   # another version

Counts leave out what instructions do not show (page-cache misses and I/O of a ledger much
larger than SQLite's cache at 1,000,000 units), so the figure that counts is still
``batch_1m.py``'s; this one tells whether a change makes each unit cheaper. It needs
``valgrind`` (Debian's package).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from batch_1m import OCTOPIPE, EmulatorProcess, pipeline_copy

COLLECTED = re.compile(r"Collected : (\d+)")


def count_run(units: int, src: str | None) -> int:
    """Instructions of one `octopipe run` over ``units`` units (init not counted)."""
    runs = Path(tempfile.mkdtemp(prefix="octopipe-instr-"))
    emulator = EmulatorProcess(batch_delay_s=1.0)
    env = {**os.environ, "OCTOPIPE_EMULATOR_URL": emulator.url}
    if src:
        env["PYTHONPATH"] = src
    common = ["--runs-dir", str(runs)]
    try:
        pipeline = pipeline_copy(runs, None, None)
        subprocess.run(
            [
                OCTOPIPE, "init", str(pipeline), "--run", "big", "--repeat", str(units),
                "--provider", "fake", "--mode", "batch", "--json", *common,
            ],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        argv = [
            "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
            sys.executable, "-m", "octopipe", "run", "big", "--batch", "--provider", "fake",
            "--poll-interval", "1", "--yes", "--quiet", *common,
        ]  # fmt: skip
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        found = COLLECTED.findall(done.stderr)
        if done.returncode != 0 or not found:
            raise RuntimeError(f"the run under callgrind failed: {done.stderr[-2000:]}")
        return int(found[-1])
    finally:
        emulator.stop()
        shutil.rmtree(runs, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, nargs=2, default=[10_000, 20_000])
    parser.add_argument("--src", help="PYTHONPATH of another checkout's src, to compare")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    small, large = sorted(args.units)
    with ThreadPoolExecutor(max_workers=2) as pool:  # two cores: both sizes at once
        runs = {n: pool.submit(count_run, n, args.src) for n in (small, large)}
        counts = {n: run.result() for n, run in runs.items()}
    per_unit = (counts[large] - counts[small]) / (large - small)
    print(
        json.dumps(
            {
                "src": args.src or "installed",
                "instructions": counts,
                "per_unit": round(per_unit),
                "fixed": round(counts[small] - small * per_unit),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
