"""Benchmark: the local work of a 3-step pipeline, per unit, on one core.

Steps (bench/pipelines/walk3): a seeded random walk with ``loop_until`` (expression step), an
LLM step whose prompt is rendered and whose canned answer is parsed, schema-checked and
rule-checked exactly as in a run, then an expression step with rules. Units are streamed; the
benchmark keeps nothing per unit, so peak memory must not grow with the unit count.

    python bench/local_steps.py --units 100000

``units_per_cpu_second`` is octopipe's own CPU: the time spent building each fake LLM answer
(which a real run receives from the network) is measured and left out; the figure including
it is printed too.

Reference (SPEC.md §8): Octobatch does about 95 units/s on such a pipeline; the bar is 50x.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from time import perf_counter_ns

from octopipe.core.config import load_pipeline
from octopipe.core.steps import CompiledPipeline
from octopipe.core.units import iter_units

PIPELINE = Path(__file__).resolve().parent / "pipelines" / "walk3"
OCTOBATCH_UNITS_PER_S = 95.0


def canned_answer(record: dict) -> str:
    """What a correct LLM would answer for this walk."""
    square = record["square"]
    return json.dumps(
        {
            "end_square": square,
            "move_count": record["moves"],
            "ending": "home" if square >= 10 else "lost",
        }
    )


def run(units: int) -> dict:
    pipeline = load_pipeline(PIPELINE)
    compiled = CompiledPipeline(pipeline)
    walk, report, tally = compiled.steps
    valid = failed = 0
    reached_home = 0
    scaffold_ns = 0  # building the fake answer stands in for the network: not octopipe's work
    started = time.process_time()
    wall = time.perf_counter()
    for unit in iter_units(pipeline.config.processing, pipeline.items_path, repeat=units):
        record = unit.fields
        result = walk.run_expression(unit.id, record)
        record = {**record, **(result.delta or {})}
        report.render(unit.id, record)
        t0 = perf_counter_ns()
        answer = canned_answer(record)
        scaffold_ns += perf_counter_ns() - t0
        result = report.check_answer(answer, record)
        if not result.ok:
            failed += 1
            continue
        record = {**record, **(result.delta or {})}
        result = tally.run_expression(unit.id, record)
        if result.ok:
            valid += 1
            reached_home += bool(result.delta and result.delta["reached_home"])
        else:
            failed += 1
    cpu_all = time.process_time() - started
    elapsed = time.perf_counter() - wall
    cpu = cpu_all - scaffold_ns / 1e9
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "units": units,
        "valid": valid,
        "failed": failed,
        "share_reaching_home": round(reached_home / max(valid, 1), 4),
        "cpu_seconds_octopipe": round(cpu, 2),
        "cpu_seconds_with_fake_answers": round(cpu_all, 2),
        "wall_seconds": round(elapsed, 2),
        "units_per_cpu_second": round(units / cpu),
        "units_per_cpu_second_with_fake_answers": round(units / cpu_all),
        "cpu_us_per_unit": round(cpu / units * 1e6, 1),
        "speedup_vs_octobatch": round(units / cpu / OCTOBATCH_UNITS_PER_S, 1),
        "peak_rss_mb": round(peak_mb, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100_000)
    args = parser.parse_args()
    result = run(args.units)
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
