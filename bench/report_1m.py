"""Benchmark: `report` and `compare` on a 1,000,000-unit run, as a user runs them.

Creates the run with `octopipe init` (`pipelines/million`: `walk`, an expression step, then
`classify`, an LLM step), then fills the ledger set-based in SQL to look like a finished run
with retries: walk all valid; classify answered once by every unit but 1% (in flight), 5%
failing their first attempt (rules or parse errors with numbers in their messages), of which
3% pass on the second attempt, 1% on the third and 1% stay failed after three. About 1.07
attempts per unit, each with tokens and a known cost. Then it times, as subprocesses
(interpreter start-up included): `report --json`, `report` (the terminal view), `report
--failures-by size`, and `compare` of the run with itself.

    python bench/report_1m.py [--units 1000000] [--keep DIR]

Bar (SPEC §8): `report` about a second.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from million_run import init_run, pass_walk, timed

_RULE = (
    "json_array(json_object('stage', 'rules', 'rule', 'high', 'path', '', 'message', "
    "'score ' || (uid % 7) || ' is below 5', 'level', 'error'))"
)
_PARSE = (
    "json_array(json_object('stage', 'parse', 'message', "
    "'Expecting value: line 1 column ' || (uid % 40) || ' (char ' || (uid % 40 - 1) || ')'))"
)


def fill(ledger: Path) -> None:
    """uid % 100: 1 in flight (no attempt yet); 0 failed after 3 attempts; 2 valid at the
    third; 3, 4 and 5 valid at the second; every other unit valid at the first."""
    db = sqlite3.connect(ledger)
    db.execute("BEGIN")
    pass_walk(db)
    for attempt_no, failing, passing in (
        (1, "uid % 100 IN (0, 2, 3, 4, 5)", "uid % 100 > 5"),
        (2, "uid % 100 IN (0, 2)", "uid % 100 IN (3, 4, 5)"),
        (3, "uid % 100 = 0", "uid % 100 = 2"),
    ):
        db.execute(
            f"""INSERT INTO attempts(uid, step_idx, attempt_no, mode, provider, model,
                    started_at, finished_at, outcome, stage, errors_json,
                    input_tokens, output_tokens, cached_tokens, cost_usd, latency_ms)
                SELECT uid, 1, {attempt_no}, 'batch', 'openai', 'gpt-4o-mini',
                       '2025-01-01T00:00:00Z', '2025-01-01T01:00:00Z',
                       CASE WHEN {failing} THEN 'failed' ELSE 'valid' END,
                       CASE WHEN {failing} THEN (CASE WHEN uid % 2 THEN 'parse' ELSE 'rules'
                                                 END) END,
                       CASE WHEN {failing} THEN (CASE WHEN uid % 2 THEN {_PARSE} ELSE {_RULE}
                                                 END) ELSE '[]' END,
                       120, 30, 0, 0.0000135, 900
                FROM units WHERE {failing} OR {passing}"""
        )
    db.execute("""INSERT INTO unit_steps(step_idx, uid, state, attempts, output_json,
                                         last_stage, last_error, updated_at)
        SELECT 1, uid,
               CASE uid % 100 WHEN 0 THEN 'exhausted' WHEN 1 THEN 'in_flight' ELSE 'valid' END,
               CASE uid % 100 WHEN 0 THEN 3 WHEN 1 THEN 0 WHEN 2 THEN 3
                              WHEN 3 THEN 2 WHEN 4 THEN 2 WHEN 5 THEN 2 ELSE 1 END,
               CASE WHEN uid % 100 > 1 THEN '{"label":"x"}' END,
               CASE WHEN uid % 100 = 0 THEN 'rules' END,
               CASE WHEN uid % 100 = 0 THEN '[{"message":"score 0 is below 5"}]' END,
               '2025-01-01T01:00:00Z'
        FROM units""")
    db.execute(
        "UPDATE run SET status = 'complete', started_at = '2025-01-01T00:00:00Z', "
        "finished_at = '2025-01-01T01:00:00Z'"
    )
    db.commit()
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="build the run in DIR and leave it there")
    args = parser.parse_args()
    runs = args.keep or Path(tempfile.mkdtemp(prefix="octopipe-report-"))
    try:
        t_init = init_run(runs, "big", args.units)
        start = time.perf_counter()
        fill(runs / "big" / "ledger.db")
        results: dict[str, float | int] = {
            "units": args.units,
            "init_s": round(t_init, 1),
            "fill_s": round(time.perf_counter() - start, 1),
        }
        for name, argv in (
            ("report_json", ["report", "big", "--json"]),
            ("report_terminal", ["report", "big"]),
            ("report_failures_by", ["report", "big", "--json", "--failures-by", "size"]),
            ("compare_two", ["compare", "big", "big", "--json"]),
        ):
            best = min(timed(*argv, "--runs-dir", str(runs), check=True)[0] for _ in range(3))
            results[f"{name}_s"] = round(best, 2)
        _, out = timed("report", "big", "--json", "--runs-dir", str(runs), check=True)
        report = json.loads(out)
        results["classify_valid"] = report["steps"][1]["valid"]
        results["classify_units_retried"] = report["steps"][1]["retries"]["units"]
        baseline = min(timed("--version", check=True)[0] for _ in range(3))
        results["interpreter_and_import_s"] = round(baseline, 2)
        print(json.dumps(results, indent=2))
    finally:
        if args.keep is None:
            shutil.rmtree(runs, ignore_errors=True)


if __name__ == "__main__":
    main()
