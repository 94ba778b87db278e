"""Benchmark: how much of an account limit the run was never told about realtime mode holds.

Issue 13, bar 4: "against the emulator set to an account limit the run was not told about
(3,000 RPM, 2,000,000 TPM, 200 ms latency), the run holds >= 0.95 of the binding limit with
<= 1% of requests answered 429".

The emulator runs in its own process with ``account_rpm``/``account_tpm`` (enforced over a
60 s sliding window with 429 + retry-after, stated in OpenAI's ``x-ratelimit-*`` headers) and
200 ms latency (±10% jitter). ``octopipe run`` -- the command a user types, as a subprocess --
drives examples/random_walk (one LLM step) as an OpenAI gpt-4o-mini run pointed at it with
``OPENAI_BASE_URL`` and told nothing about limits: no ``--rpm``/``--tpm``, no ``api.rpm``, so
it starts at the registry's tier-1 default (500 rpm, 200,000 tpm) and has to learn the rest.

Counted from the run's ``trace.jsonl`` (one line per call, at its answer) over the steady part
(``--edge-s`` cut at each end): requests and tokens (input + output) per minute, each as a
share of the account's limit; the *binding* limit is the one with the larger share. The 429s
are the emulator's own count over every request it received. The child's CPU (user + sys,
from ``wait4``) per call is printed too.

    python bench/realtime_learned_limits.py                 # ~2 minutes; prints one JSON object
    python bench/realtime_learned_limits.py --seconds 40    # a quicker look (window not full)
    python bench/realtime_learned_limits.py --account-tpm 300000   # tokens bind instead
    python bench/realtime_learned_limits.py --keep /tmp/learned-run   # keep trace.jsonl, run.log
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from realtime_rpm import (
    EmulatorProcess,
    emulator_stats,
    serving,
    steady_window,
    unix_time,
    walk_answer,
)

REPO = Path(__file__).resolve().parents[1]
PIPELINE = REPO / "examples" / "random_walk"
MODEL = "gpt-4o-mini"
BAR_SHARE = 0.95
BAR_429_PERCENT = 1.0


def serve(latency_ms: float, account_rpm: int, account_tpm: int) -> None:
    """Child process: the emulator with account limits, until killed; its root URL first."""
    from octopipe.emulator import Emulator, EmulatorConfig, default_answer

    def answer(request: Any) -> Any:
        return walk_answer(request) or default_answer(request)

    config = EmulatorConfig(
        latency_ms=latency_ms,
        jitter_ms=latency_ms * 0.1,
        account_rpm=account_rpm,
        account_tpm=account_tpm,
        answer_fn=answer,
    )

    async def main() -> None:
        emulator = Emulator(config)
        await emulator.start()
        print(emulator.root_url, flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@contextlib.contextmanager
def emulator_process(args: argparse.Namespace) -> Iterator[EmulatorProcess]:
    flags = ["--latency-ms", str(args.latency_ms), "--account-rpm", str(args.account_rpm)]
    with serving(__file__, [*flags, "--account-tpm", str(args.account_tpm)]) as emulator:
        yield emulator


def octopipe_command() -> list[str]:
    script = Path(sys.executable).with_name("octopipe")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "from octopipe.cli import main; main()"]


def prepare(work: Path, units: int) -> Path:
    """random_walk as an OpenAI gpt-4o-mini pipeline, told nothing about limits."""
    pipeline = work / "pipeline"
    shutil.copytree(PIPELINE, pipeline)
    config_file = pipeline / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["api"].update({"provider": "openai", "model": MODEL})
    config["processing"]["repeat"] = units
    config["post_process"] = []
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    return pipeline


def run_cli(work: Path, pipeline: Path, root: str) -> tuple[int, float, float, str]:
    """``octopipe run PIPELINE --yes``: (exit code, wall s, child CPU s, stderr tail)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_API_KEY", "_BASE_URL")) and "PROXY" not in k.upper()
    }
    env.update(OPENAI_API_KEY="sk-bench-not-a-key", OPENAI_BASE_URL=root + "/openai/v1")
    command = [*octopipe_command(), "run", str(pipeline), "--yes", "--quiet"]
    command += ["--run", "learned", "--runs-dir", str(work / "runs")]
    t0 = time.monotonic()
    child = subprocess.Popen(
        command, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert child.stderr is not None
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - t0
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, wall, usage.ru_utime + usage.ru_stime, stderr[-2000:]


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    units = round(args.account_rpm / 60 * args.seconds)
    pipeline = prepare(work, units)
    with emulator_process(args) as emulator:
        code, wall, cpu_s, stderr = run_cli(work, pipeline, emulator.root)
        stats = emulator_stats(emulator.root)
    events = [json.loads(x) for x in (work / "runs/learned/trace.jsonl").read_text().splitlines()]
    calls = [(unix_time(e["ts"]), e) for e in events if e.get("kind") == "call"]
    start, end, inside = steady_window([(t, e["status"]) for t, e in calls], args.edge_s)
    tokens = sum(
        (e.get("input_tokens") or 0) + (e.get("output_tokens") or 0)
        for t, e in calls
        if start < t <= end
    )
    minutes = (end - start) / 60
    rpm, tpm = inside / minutes, tokens / minutes
    shares = {"requests": rpm / args.account_rpm, "tokens": tpm / args.account_tpm}
    binding = max(shares, key=lambda k: shares[k])
    percent_429 = 100 * stats["status_429"] / max(1, stats["requests_total"])
    statuses: dict[str, int] = {}
    for _, e in calls:
        statuses[str(e["status"])] = statuses.get(str(e["status"]), 0) + 1
    return {
        "exit_code": code,
        "stderr_tail": stderr if code else "",
        "units": units,
        "account_rpm": args.account_rpm,
        "account_tpm": args.account_tpm,
        "emulator_latency_ms": args.latency_ms,
        "learned": [
            {k: e[k] for k in ("stated_rpm", "stated_tpm", "pace_rpm", "pace_tpm")}
            for e in events
            if e.get("kind") == "pace"
        ],
        "wall_s": round(wall, 1),
        "steady_window_s": round(end - start, 1),
        "achieved_rpm": round(rpm, 1),
        "achieved_tpm": round(tpm),
        "tokens_per_call": round(tokens / max(1, inside), 1),
        "binding": binding,
        "share_of_binding_limit": round(shares[binding], 4),
        "calls_by_status": statuses,
        "emulator_requests": stats["requests_total"],
        "emulator_429s": stats["status_429"],
        "percent_429": round(percent_429, 3),
        "child_cpu_us_per_call": round(cpu_s / max(1, len(calls)) * 1e6),
        "bar_met": code == 0 and shares[binding] >= BAR_SHARE and percent_429 <= BAR_429_PERCENT,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--account-rpm", type=int, default=3000)
    parser.add_argument("--account-tpm", type=int, default=2_000_000)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=100.0, help="length of the run")
    parser.add_argument("--edge-s", type=float, default=5.0, help="cut from each end")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folder here")
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.latency_ms, args.account_rpm, args.account_tpm)
        return 0
    summary: dict[str, Any] = {
        "bench": "realtime_learned_limits",
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory(prefix="octopipe-learned-") as tmp:
        summary.update(measure(args, Path(tmp)))
        if args.keep is not None:
            shutil.copytree(Path(tmp) / "runs" / "learned", args.keep)
    print(json.dumps(summary, indent=2))
    return 0 if summary["bar_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
