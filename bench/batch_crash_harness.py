"""Batch crash harness, full schedule: kill -9 ``octopipe run --batch`` at seeded instants.

    python bench/batch_crash_harness.py --seed 1 [--units 5000] [--kills 30] [--delay 3]
        [--vendor openai] [--truncate-rate 0.05]

The emulator (in this process) finishes each batch ``--delay`` seconds after it is created;
the runner is killed at seeded instants -- timed, right after a submit is accepted and before
its id is recorded, after part of a batch's results were recorded, before a batch is marked
collected -- and resumed each time (tests/support/batch_crash.py has the details);
with ``--truncate-rate``, that share of the results downloads also arrives cut. At
the end: verify clean, every unit terminal exactly once, no batch created twice at the
emulator, the ledger's cost equal to the emulator's answered usage at batch prices. Prints a
JSON summary; exits 0 only when all of it holds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.batch_crash import BatchHarness  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, required=True, help="seed of the kill schedule")
    parser.add_argument("--units", type=int, default=5_000)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--delay", type=float, default=3.0, help="emulator batch delay, s")
    parser.add_argument("--chunk", type=int, default=100, help="requests per batch")
    parser.add_argument("--vendor", default="openai", choices=["openai", "anthropic", "gemini"])
    parser.add_argument(
        "--truncate-rate", type=float, default=0.0, help="share of results downloads cut"
    )
    parser.add_argument("--work-dir", type=Path, help="keep the run here (default: temp)")
    parser.add_argument("--log", action="store_true", help="print every kill")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        harness = BatchHarness(
            work,
            units=args.units,
            kills=args.kills,
            seed=args.seed,
            batch_delay_s=args.delay,
            chunk=args.chunk,
            max_window_s=1.5 * args.delay,
            vendor=args.vendor,
            truncate_rate=args.truncate_rate,
        )
        result = harness.run()
    summary = result.summary()
    if args.log:
        summary["kill_log"] = [vars(k) for k in result.kills]
    print(json.dumps(summary, indent=2))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
