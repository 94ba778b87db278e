"""Benchmark: `status`, `verify` and `ps` on a 1,000,000-unit run, as a user runs them.

Creates the run with `octopipe init` (1,000,000 units), then fills step states set-based in
SQL to look like a run mid-way (walk all valid; classify 97% valid, 1% failed, 1% in flight,
1% missing), and times each command as a subprocess (interpreter start-up included).

    python bench/tools_1m.py [--units 1000000]

Bar (SPEC §8): about a second each.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import tempfile
from pathlib import Path

from million_run import init_run, pass_walk, timed


def fill(ledger: Path) -> None:
    db = sqlite3.connect(ledger)
    db.execute("BEGIN")
    pass_walk(db)
    db.execute("""INSERT INTO unit_steps(step_idx, uid, state, attempts, output_json, updated_at)
        SELECT 1, uid, CASE WHEN uid % 100 = 0 THEN 'failed' WHEN uid % 100 = 1 THEN 'in_flight'
                            ELSE 'valid' END, 1,
               CASE WHEN uid % 100 > 1 THEN '{"label":"x"}' END, 'T'
        FROM units WHERE uid % 100 != 2""")
    # one attempt per unit that reached the LLM step, as a real run leaves them (verify's
    # deep checks read every one)
    db.execute("""INSERT INTO attempts(uid, step_idx, attempt_no, mode, outcome, errors_json)
        SELECT uid, 1, 1, 'realtime', CASE WHEN state = 'valid' THEN 'valid' ELSE 'failed' END, '[]'
        FROM unit_steps WHERE step_idx = 1 AND state != 'in_flight'""")
    db.commit()
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1_000_000)
    args = parser.parse_args()
    runs = Path(tempfile.mkdtemp(prefix="octopipe-tools-"))
    try:
        t_init = init_run(runs, "big", args.units)
        fill(runs / "big" / "ledger.db")
        results: dict[str, float | int | bool] = {"units": args.units, "init_s": round(t_init, 1)}
        for name, argv in (
            ("status", ["status", "big", "--json"]),
            ("verify", ["verify", "big", "--json"]),
            ("verify_deep", ["verify", "big", "--deep", "--json"]),
            ("ps", ["ps", "--json"]),
        ):
            best = min(timed(*argv, "--runs-dir", str(runs))[0] for _ in range(3))
            results[f"{name}_s"] = round(best, 2)
        _, verify_out = timed("verify", "big", "--json", "--runs-dir", str(runs))
        report = json.loads(verify_out)
        results["verify_missing_ids_listed"] = sum(len(s["missing"]) for s in report["steps"])
        baseline = min(timed("--version")[0] for _ in range(3))
        results["interpreter_and_import_s"] = round(baseline, 2)
        print(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(runs, ignore_errors=True)


if __name__ == "__main__":
    main()
