"""Benchmark: how much of a requests-per-minute limit realtime mode holds, and its per-call cost.

SPEC.md §8: "hold ≥95% of the configured requests-per-minute limit against the emulator with
realistic latency, with no wasted 429 retries". Octobatch makes one call at a time with a fixed
0.5 s pause.

Two runs of examples/random_walk (one LLM step, ``report``), each against the local emulator in
its own process (so the emulator's CPU is not counted as octopipe's), reached through the
OpenAI SDK as an OpenAI-compatible server:

1. **paced**: emulator latency 200 ms (±10% jitter) and an rpm limit of 1,200 per model on the
   emulator; the client runs with ``--rpm 1200``. Achieved requests per minute are counted from
   ``trace.jsonl`` (one line per call) over the steady part of the run (the first and last
   ``--edge-s`` seconds left out), as a share of the limit (bar: ≥ 0.95), and the emulator's
   own counters give the 429s sent (bar: 0).
2. **overhead**: emulator latency 0, no rpm limit anywhere: calls per second and the client
   process's CPU microseconds per call over the steady part (a sampler thread reads
   ``time.process_time()``), i.e. what octopipe spends per call (SDK, pacing, validation,
   ledger) when the provider costs nothing. ``--vendor anthropic`` runs it through the
   Anthropic adapter instead (``--provider fake:anthropic`` against the same emulator).
   ``--breakdown`` runs it once more under cProfile and splits the client's time by layer
   (the vendor SDK, the HTTP stack, octopipe's own code -- the pipeline's local steps
   included --, SQLite, asyncio, JSON, the rest; the SDK's import left out): shares of the
   profiled time, also shown as µs per call of the unprofiled figure.

    python bench/realtime_rpm.py                     # ~2 minutes; prints one JSON object
    python bench/realtime_rpm.py --seconds 30 --overhead-calls 1000   # a quicker look
    python bench/realtime_rpm.py --skip-paced --overhead-calls 10000 --breakdown
    python bench/realtime_rpm.py --skip-paced --overhead-calls 10000 --vendor anthropic
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
PIPELINE = REPO / "examples" / "random_walk"
MODEL = "gpt-4o-mini"
VENDORS = ("openai-compatible", "anthropic")
ADAPTERS = {
    "openai-compatible": "octopipe.providers.openai_adapter",
    "anthropic": "octopipe.providers.anthropic_adapter",
}
LAYERS = {  # top-level package (or module file) -> layer of the breakdown
    "openai": "vendor SDK",
    "anthropic": "vendor SDK",
    "pydantic": "vendor SDK",
    "pydantic_core": "vendor SDK",
    "typing.py": "vendor SDK",  # the SDKs' type introspection
    "httpx2": "HTTP",
    "httpcore2": "HTTP",
    "h11": "HTTP",
    "anyio": "HTTP",
    "sniffio": "HTTP",
    "aiohttp": "HTTP",
    "yarl": "HTTP",
    "multidict": "HTTP",
    "socket.py": "HTTP",
    "ssl.py": "HTTP",
    "octopipe": "octopipe",
    "jinja2": "octopipe",  # prompt rendering
    "jsonschema": "octopipe",  # answer checking
    "asyncio": "asyncio",
    "selectors.py": "asyncio",
    "json": "JSON",
}
BAR_SHARE = 0.95
_TRAIL = re.compile(r"in order:\n([0-9, ]+)")


# --- the emulator, in a child process -------------------------------------------------------------


def walk_answer(request: Any) -> dict[str, Any] | None:
    """A correct answer for random_walk's ``report`` step (so no validation retries)."""
    match = _TRAIL.search(request.prompt)
    if match is None:
        return None
    trail = [int(x) for x in match.group(1).split(",")]
    end = trail[-1]
    return {
        "end_square": end,
        "move_count": len(trail) - 1,
        "ending": "home" if end >= 10 else "lost",
    }


def serve(latency_ms: float, rpm: int | None) -> None:
    """Child process: run the emulator until killed; print its root URL first."""
    from octopipe.emulator import Emulator, EmulatorConfig, default_answer

    def answer(request: Any) -> Any:
        return walk_answer(request) or default_answer(request)

    config = EmulatorConfig(
        latency_ms=latency_ms, jitter_ms=latency_ms * 0.1, rpm=rpm, answer_fn=answer
    )

    async def main() -> None:
        emulator = Emulator(config)
        await emulator.start()
        print(emulator.root_url, flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@dataclass
class EmulatorProcess:
    root: str
    pid: int

    def cpu_s(self) -> float:
        """CPU seconds the emulator process has used so far (Linux ``/proc``; NaN elsewhere)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def emulator_process(latency_ms: float, rpm: int | None) -> Iterator[EmulatorProcess]:
    flags = ["--latency-ms", str(latency_ms), "--serve-rpm", str(rpm or 0)]  # 0: no limit
    with serving(__file__, flags) as emulator:
        yield emulator


@contextlib.contextmanager
def serving(script: str, flags: list[str]) -> Iterator[EmulatorProcess]:
    """``script --serve FLAGS`` in its own process until the block ends; it prints its root URL."""
    command = [sys.executable, script, "--serve", *flags]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        root = child.stdout.readline().strip()
        if not root.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"the emulator did not start: {root!r}")
        yield EmulatorProcess(root, child.pid)
    finally:
        child.terminate()
        child.wait(10)


def emulator_stats(root: str) -> dict[str, Any]:
    with urllib.request.urlopen(root + "/_emulator/stats", timeout=10) as reply:
        return json.loads(reply.read())


# --- one run --------------------------------------------------------------------------------------


class CpuSampler(threading.Thread):
    """(monotonic, process CPU seconds) every ``period`` seconds, for the steady window."""

    def __init__(self, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.period = period
        self.samples: list[tuple[float, float]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.time(), time.process_time()))
            self._halt.wait(self.period)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.samples.append((time.time(), time.process_time()))

    def cpu_between(self, start: float, end: float) -> float:
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return float("nan")
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        return (c1 - c0) * (end - start) / (t1 - t0)


@dataclass
class RunResult:
    units: int
    wall_s: float
    calls: list[tuple[float, Any]]  # (unix time, status) per trace line
    sampler: CpuSampler
    status: str
    stats: dict[str, Any]
    emulator_cpu_s: float


def run_pipeline(
    work: Path,
    name: str,
    emulator: EmulatorProcess,
    units: int,
    rpm: int | None,
    concurrency: int | None,
    vendor: str = "openai-compatible",
    profile: cProfile.Profile | None = None,
) -> RunResult:
    from octopipe.engine.create import RunOptions, create_run
    from octopipe.engine.providers_setup import realtime_executor
    from octopipe.engine.realtime import RealtimeOptions
    from octopipe.engine.runner import Runner

    pipeline = work / f"{name}_pipeline"
    shutil.copytree(PIPELINE, pipeline)
    config_file = pipeline / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    if vendor == "anthropic":  # the Anthropic adapter, at the emulator named by the env
        config["api"].update({"provider": "fake", "model": MODEL})
        config["api"].pop("base_url", None)
        os.environ["OCTOPIPE_EMULATOR_URL"] = emulator.root
    else:
        config["api"].update(
            {"provider": vendor, "base_url": emulator.root + "/openai/v1", "model": MODEL}
        )
    config["processing"]["repeat"] = units
    config["post_process"] = []
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    paths = create_run(pipeline, work / "runs", RunOptions(name=name, mode="realtime")).paths
    options = RealtimeOptions(rpm=rpm, concurrency=concurrency)
    sampler = CpuSampler()
    sampler.start()
    t0, emulator_cpu = time.monotonic(), emulator.cpu_s()
    if vendor == "anthropic":
        options = RealtimeOptions(rpm=rpm, concurrency=concurrency, provider="fake:anthropic")
    if profile is not None:
        profile.enable()
    with realtime_executor(options) as factory:
        outcome = Runner(paths, executor=factory, export=False).run()
    if profile is not None:
        profile.disable()
    wall = time.monotonic() - t0
    emulator_cpu = emulator.cpu_s() - emulator_cpu
    sampler.stop()
    calls = []
    for line in paths.trace.read_text().splitlines():
        event = json.loads(line)
        if event.get("kind") == "call":
            calls.append((unix_time(event["ts"]), event["status"]))
    stats = emulator_stats(emulator.root)
    return RunResult(units, wall, calls, sampler, outcome.status.value, stats, emulator_cpu)


def unix_time(stamp: str) -> float:
    """A trace time stamp (``...Z``) as seconds since the epoch."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def steady_window(calls: list[tuple[float, Any]], edge_s: float) -> tuple[float, float, int]:
    """(start, end, calls finished inside) with ``edge_s`` cut at both ends of the run."""
    times = sorted(t for t, _ in calls)
    start, end = times[0] + edge_s, times[-1] - edge_s
    if end <= start:  # a short run: use all of it
        start, end = times[0], times[-1]
    inside = sum(1 for t in times if start < t <= end)
    return start, end, inside


# --- the two measurements -------------------------------------------------------------------------


def paced(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    units = round(args.rpm / 60 * args.seconds)
    with emulator_process(args.latency_ms, args.rpm) as emulator:
        result = run_pipeline(work, "paced", emulator, units, args.rpm, args.concurrency)
    start, end, inside = steady_window(result.calls, args.edge_s)
    achieved = inside / (end - start) * 60
    statuses: dict[str, int] = {}
    for _, status in result.calls:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    overall = len(result.calls) / (
        max(t for t, _ in result.calls) - min(t for t, _ in result.calls)
    )
    return {
        "status": result.status,
        "units": units,
        "emulator_latency_ms": args.latency_ms,
        "rpm_limit": args.rpm,
        "client_rpm": args.rpm,
        "wall_s": round(result.wall_s, 1),
        "steady_window_s": round(end - start, 1),
        "achieved_rpm": round(achieved, 1),
        "share_of_limit": round(achieved / args.rpm, 4),
        "overall_rpm": round(overall * 60, 1),
        "calls_by_status": statuses,
        "emulator_429s": result.stats["status_429"],
        "emulator_requests": result.stats["requests_total"],
        "bar_met": achieved / args.rpm >= BAR_SHARE and result.stats["status_429"] == 0,
    }


def overhead(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    with emulator_process(0.0, None) as emulator:
        result = run_pipeline(
            work, "overhead", emulator, args.overhead_calls, None, args.concurrency, args.vendor
        )
    start, end, inside = steady_window(result.calls, min(args.edge_s, 2.0))
    cpu = result.sampler.cpu_between(start, end)
    return {
        "status": result.status,
        "vendor": args.vendor,
        "units": args.overhead_calls,
        "emulator_latency_ms": 0,
        "wall_s": round(result.wall_s, 1),
        "steady_window_s": round(end - start, 1),
        "calls_per_s": round(inside / (end - start), 1),
        "cpu_us_per_call": round(cpu / inside * 1e6) if inside else None,
        "cpu_share_of_one_core": round(cpu / (end - start), 2),
        "emulator_cpu_us_per_call": round(result.emulator_cpu_s / len(result.calls) * 1e6),
        "emulator_requests": result.stats["requests_total"],
    }


def breakdown(
    work: Path, args: argparse.Namespace, cpu_us_per_call: float | None
) -> dict[str, Any]:
    """The overhead run again under cProfile: the client's time split by layer (``LAYERS``),
    as shares of the profiled time and as µs per call of the unprofiled figure."""
    import importlib

    for module in ("octopipe.emulator", "octopipe.providers.catalog", ADAPTERS[args.vendor]):
        importlib.import_module(module)  # start-up imports stay out of the profile
    profile = cProfile.Profile()
    with emulator_process(0.0, None) as emulator:
        run_pipeline(
            work, "profiled", emulator, args.overhead_calls, None, args.concurrency,
            args.vendor, profile,
        )  # fmt: skip
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    times: dict[str, float] = {}
    for key, row in stats.items():
        for layer, seconds in _attributed(stats, key, row[2], 4).items():
            times[layer] = times.get(layer, 0.0) + seconds
    total = sum(times.values()) or 1.0
    shares = dict(sorted(((k, v / total) for k, v in times.items()), key=lambda kv: -kv[1]))
    out: dict[str, Any] = {"share_of_profiled_time": {k: round(v, 3) for k, v in shares.items()}}
    if cpu_us_per_call:
        out["us_per_call"] = {k: round(v * cpu_us_per_call) for k, v in shares.items()}
    return out


_BUILTIN_LAYERS = (
    ("sqlite3", "SQLite"),
    ("socket", "HTTP"),
    ("select", "asyncio"),
    ("json", "JSON"),
)


def _attributed(stats: dict[Any, Any], key: Any, seconds: float, depth: int) -> dict[str, float]:
    """``seconds`` of function ``key``'s own time by layer: a C function or a standard-library
    one (``other``) counts in the layers of its callers, in proportion to the time each
    caller spent in it, up to ``depth`` callers up."""
    layer = _layer(key[0], key[2])
    callers = stats[key][4]
    if layer != "other" or depth == 0 or not callers:
        return {layer: seconds}
    spent = {caller: row[2] for caller, row in callers.items()}
    whole = sum(spent.values())
    out: dict[str, float] = {}
    for caller, part in spent.items():
        if whole <= 0 or caller not in stats:
            continue
        for name, share in _attributed(stats, caller, seconds * part / whole, depth - 1).items():
            out[name] = out.get(name, 0.0) + share
    return out or {layer: seconds}


def _layer(filename: str, function: str) -> str:
    """The ``LAYERS`` layer of one profiled function (C functions by the name of their type)."""
    if filename == "~":
        return next((layer for key, layer in _BUILTIN_LAYERS if key in function), "other")
    path = filename.replace("\\", "/")
    if "/src/octopipe/" in path:
        return "octopipe"
    parts = path.split("site-packages/", 1)[-1].split("/")
    for key in (parts[0], parts[-1]):
        if key in LAYERS:
            return LAYERS[key]
    for key in ("asyncio", "json", "sqlite3"):
        if f"/{key}/" in path:
            return {"asyncio": "asyncio", "json": "JSON", "sqlite3": "SQLite"}[key]
    return "other"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-rpm", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rpm", type=int, default=1200)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=100.0, help="length of the paced run")
    parser.add_argument("--edge-s", type=float, default=5.0, help="cut from each end")
    parser.add_argument("--concurrency", type=int, default=None, help="default: the engine's")
    parser.add_argument("--overhead-calls", type=int, default=3000)
    parser.add_argument("--skip-paced", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--vendor", choices=VENDORS, default=VENDORS[0], help="overhead phase")
    parser.add_argument(
        "--breakdown", action="store_true", help="profile the overhead phase once more"
    )
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.latency_ms, args.serve_rpm or None)
        return 0
    summary: dict[str, Any] = {
        "bench": "realtime_rpm",
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory(prefix="octopipe-rpm-") as tmp:
        work = Path(tmp)
        if not args.skip_paced:
            summary["paced"] = paced(work, args)
        if not args.skip_overhead:
            summary["overhead"] = overhead(work, args)
            if args.breakdown:
                per_call = summary["overhead"]["cpu_us_per_call"]
                summary["overhead"]["breakdown"] = breakdown(work, args, per_call)
    if "paced" in summary:
        summary["bar_met"] = summary["paced"]["bar_met"]
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
