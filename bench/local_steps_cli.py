"""Benchmark: `octopipe run PIPELINE --yes -q` on a 3-step expression pipeline, as a user waits.

The pipeline (``pipelines/walk3local``) is issue 13's shape: a seeded random walk with
``loop_until``, an expression step reading how it ended, an expression step scoring it. The
whole command is timed as a subprocess: interpreter start-up, creating the run (snapshot and
unit inserts), the three steps, the final export and the summary. Wall time, CPU (user + sys)
and peak RSS are the child's own, from ``wait4``; each size is run ``--tries`` times and the
best is kept (the development machine is shared, so the best is the least disturbed).
The child runs with Python's bytecode cache on (``PYTHONDONTWRITEBYTECODE`` removed from its
environment, and one untimed ``octopipe --version`` first writes the cache), as on a user's
machine where pip compiled the package at install: without it every start-up recompiles
octopipe's modules (about 0.1 s more).

    python bench/local_steps_cli.py                       # 20,000 units
    python bench/local_steps_cli.py --units 100000 --tries 1
    python bench/local_steps_cli.py --flat                # peak RSS at 10,000 ... 1,000,000
    python bench/local_steps_cli.py --flat --flat-units 10000,100000

Anchor: Octobatch runs 1,000 units of this shape in 7.4 s on this machine class, its own
start-up included: 7.4 ms a unit. The bar is 50x: at most 148 us a unit, whole command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PIPELINE = HERE / "pipelines" / "walk3local"
OCTOPIPE = str(Path(sys.executable).with_name("octopipe"))
OCTOBATCH_MS_PER_UNIT = 7.4
ITEMS = 1  # items.yaml holds one track; --repeat N gives N units


@dataclass
class Timing:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float


def child_env() -> dict[str, str]:
    """The benchmark's environment with the bytecode cache allowed (see the module notes)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def warm_bytecode_cache() -> None:
    subprocess.run([OCTOPIPE, "--version"], env=child_env(), check=True, capture_output=True)


def run_once(units: int, runs: Path) -> Timing:
    argv = [OCTOPIPE, "run", str(PIPELINE), "--repeat", str(units // ITEMS), "--yes", "-q"]
    argv += ["--runs-dir", str(runs)]
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env()
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    err = process.stderr.read().decode() if process.stderr else ""
    if process.stderr:
        process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"octopipe run failed ({status}): {err}")
    return Timing(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def measure(units: int, tries: int) -> dict:
    best: Timing | None = None
    for _ in range(tries):
        runs = Path(tempfile.mkdtemp(prefix="octopipe-local-cli-"))
        try:
            timing = run_once(units, runs)
            check(runs, units)
        finally:
            shutil.rmtree(runs, ignore_errors=True)
        if best is None or timing.cpu_s < best.cpu_s:
            best = timing
    assert best is not None
    wall_us, cpu_us = best.wall_s / units * 1e6, best.cpu_s / units * 1e6
    return {
        "units": units,
        "tries": tries,
        "wall_s": round(best.wall_s, 2),
        "cpu_s": round(best.cpu_s, 2),
        "wall_us_per_unit": round(wall_us, 1),
        "cpu_us_per_unit": round(cpu_us, 1),
        "x_octobatch_wall": round(OCTOBATCH_MS_PER_UNIT * 1000 / wall_us, 1),
        "x_octobatch_cpu": round(OCTOBATCH_MS_PER_UNIT * 1000 / cpu_us, 1),
        "peak_rss_mb": round(best.peak_rss_mb, 1),
    }


def check(runs: Path, units: int) -> None:
    """Every unit came out of the last step."""
    (run,) = runs.iterdir()
    with (run / "outputs" / "tally_validated.jsonl").open("rb") as lines:
        count = sum(1 for _ in lines)
    if count != units:
        raise SystemExit(f"{count} units exported, expected {units}")


# The same three steps in plain Python, no octopipe: a yardstick of this machine's speed at the
# time of the measurement (the shared VM's speed drifts by a third within an hour), so that
# figures taken at different times can be compared through their ratio to it.
_PLAIN_WALK = """
import hashlib, random, sys, time
units = int(sys.argv[1])
start = time.process_time()
for n in range(units):
    seed = int.from_bytes(hashlib.sha256(f"middle__rep{n:04d}\\x00walk".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    square, trail, moves = 5, [5], 0
    while not (square <= 0 or square >= 10):
        square = square + rng.choice([-1, 1])
        trail = trail + [square]
        moves = moves + 1
    record = {"square": square, "trail": trail, "moves": moves}
    record.update(end_square=square, move_count=moves, ending="home" if square >= 10 else "lost")
    record.update(reached_home=square >= 10, furthest_left=min(trail), furthest_right=max(trail))
    record["span"] = record["furthest_right"] - record["furthest_left"]
print((time.process_time() - start) / units * 1e6)
"""


def plain_python_us(units: int, tries: int) -> float:
    """CPU microseconds a unit of the walk in plain Python (best of ``tries``)."""
    runs = [
        float(
            subprocess.run(
                [sys.executable, "-c", _PLAIN_WALK, str(units)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        for _ in range(tries)
    ]
    return round(min(runs), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=20_000)
    parser.add_argument("--tries", type=int, default=3, help="runs per size; the best is kept")
    parser.add_argument(
        "--flat", action="store_true", help="also run the --flat-units sizes once (peak RSS)"
    )
    parser.add_argument(
        "--flat-units",
        default="10000,100000,1000000",
        help="comma-separated sizes for --flat (default 10,000 / 100,000 / 1,000,000)",
    )
    args = parser.parse_args()
    warm_bytecode_cache()
    result: dict = {"main": measure(args.units, args.tries)}
    floor = plain_python_us(args.units, args.tries)
    result["plain_python"] = {
        "cpu_us_per_unit": floor,
        "octopipe_wall_over_plain": round(result["main"]["wall_us_per_unit"] / floor, 2),
    }
    if args.flat:
        result["flat"] = {}
        for size in (int(n) for n in args.flat_units.split(",")):
            one = measure(size, 1)
            result["flat"][str(size)] = {
                k: one[k] for k in ("peak_rss_mb", "wall_us_per_unit", "cpu_us_per_unit")
            }
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
