"""Crash harness, full schedule: kill -9 ``octopipe`` at seeded random instants, resume, repeat.

    python bench/crash_harness.py --seed 1 [--units 20000] [--kills 30] [--work-dir DIR] [--log]

Runs the ``tests/fixtures/long_walk`` pipeline (three expression steps, ~5% of the units fail
a rule at the second step) once uninterrupted as the reference, then again under a kill
schedule drawn from ``random.Random(seed)``: kills during init, during the runner's start-up,
during the work, during the final export, and during the ``export``/``revalidate`` commands
when this octopipe has them. After the last resume it checks (see tests/support/crash.py)
that ``verify()`` is clean, every unit is valid or exhausted exactly once at each step it
reached (plain SQL on the ledger), the ledger rows and the exports are identical to the
reference, and the run is complete. Prints a JSON summary; exits 0 only when all of it holds.

The seed fixes the schedule (phases and relative instants); where a kill lands exactly depends
on the machine's speed, so each kill's landing point is in the ``--log`` output.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.crash import LONG_WALK, Harness  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, required=True, help="seed of the kill schedule")
    parser.add_argument("--units", type=int, default=20_000, help="units (--repeat)")
    parser.add_argument("--kills", type=int, default=30, help="kills of `octopipe run`")
    parser.add_argument("--init-kills", type=int, default=2)
    parser.add_argument("--startup-kills", type=int, default=3)
    parser.add_argument("--export-kills", type=int, default=1)
    parser.add_argument("--work-dir", type=Path, help="keep the runs here (default: temp)")
    parser.add_argument("--log", action="store_true", help="include every kill in the JSON")
    parser.add_argument("--verbose", "-v", action="store_true", help="progress on stderr")
    args = parser.parse_args(argv)

    def progress(message: str) -> None:
        if args.verbose:
            print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="octopipe-crash-") as tmp:
        work_dir = args.work_dir or Path(tmp) / "harness"
        harness = Harness(
            LONG_WALK,
            args.units,
            work_dir,
            seed=args.seed,
            kills=args.kills,
            init_kills=args.init_kills,
            startup_kills=args.startup_kills,
            export_kills=args.export_kills,
            progress=progress,
        )
        result = harness.run()
    summary = result.summary(with_log=args.log)
    print(json.dumps(summary, indent=2))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
