"""Benchmark: N units through a one-LLM-step pipeline in batch mode against the emulator.

The emulator runs in its own process (``octopipe emulator``, each batch job ends after
``--batch-delay-s``); octopipe runs as a user runs it, in two subprocesses pointed at the
emulator with ``OCTOPIPE_EMULATOR_URL``:

    octopipe init bench/pipelines/batch1 --run R --repeat N --mode batch ...
    octopipe run R --batch --provider fake --yes --quiet --poll-interval 1

so the emulator's CPU and memory are not counted as octopipe's. Each figure is that one
child's own: wall time, CPU (user + sys, from ``wait4``) and peak RSS (``ru_maxrss``). The
emulator's peak RSS (``VmHWM``) is reported for information. ``valid`` and the batch counts
come from ``octopipe status R --json``.

    python bench/batch_1m.py                         # 1,000,000 units
    python bench/batch_1m.py --units 100000
    python bench/batch_1m.py --flat                  # 100,000 then 1,000,000: memory flat?

Bar (SPEC §8, issue #5): peak memory under 500 MB, flat as units grow. The script exits 1 if
a run leaves any unit not valid or a runner peaks at 500 MB or more.
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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PIPELINE = HERE / "pipelines" / "batch1"
OCTOPIPE = str(Path(sys.executable).with_name("octopipe"))
BAR_MB = 500.0


@dataclass
class Child:
    """What one finished subprocess used: wall and CPU seconds, peak RSS, its output."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    rss_timeline_mb: list[float] = field(default_factory=list)


def run_child(argv: list[str], env: dict[str, str], timeout_s: float, sample_s: float) -> Child:
    """Run ``argv`` to the end; its own rusage comes from ``wait4`` on its pid."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        samples: list[float] = []
        stop = threading.Event()
        sampler = threading.Thread(
            target=_sample_rss, args=(process.pid, sample_s, samples, stop), daemon=True
        )
        sampler.start()
        timer = threading.Timer(timeout_s, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
            stop.set()
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        sampler.join()
        out.seek(0)
        err.seek(0)
        return Child(
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
            returncode=process.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            rss_timeline_mb=samples,
        )


def _sample_rss(pid: int, every_s: float, samples: list[float], stop: threading.Event) -> None:
    while not stop.wait(every_s):
        rss = _proc_status_mb(pid, "VmRSS")
        if rss is not None:
            samples.append(rss)


def _proc_status_mb(pid: int, key: str) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return None


class EmulatorProcess:
    """``octopipe emulator`` on a free port, in a process of its own."""

    def __init__(self, batch_delay_s: float) -> None:
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve-emulator",
            "--port",
            "0",
            "--batch-delay-s",
            str(batch_delay_s),
        ]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline()  # "octopipe emulator listening on URL"
        if "listening on" not in first:
            self.process.kill()
            raise RuntimeError(f"the emulator did not start: {first!r}")
        self.url = first.rsplit(" ", 1)[-1].strip()

    def peak_rss_mb(self) -> float | None:
        return _proc_status_mb(self.process.pid, "VmHWM")

    def cpu_s(self) -> float | None:
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve_emulator(argv: list[str]) -> None:
    """The emulator process: ``octopipe emulator`` (in a child of this script)."""
    from octopipe.emulator.cli import main as emulator_main

    sys.exit(emulator_main(argv))


def pipeline_copy(dest: Path, chunk_size: int | None, max_inflight: int | None) -> Path:
    """``pipelines/batch1``, with ``chunk_size`` / ``max_inflight_batches`` changed if asked."""
    folder = dest / "batch1"
    shutil.copytree(PIPELINE, folder)
    config = folder / "config.yaml"
    text = config.read_text()
    if chunk_size is not None:
        text = re.sub(r"(?m)^(\s+chunk_size:) \d+", rf"\1 {chunk_size}", text)
    if max_inflight is not None:
        text = re.sub(r"(?m)^(\s+max_inflight_batches:) \d+", rf"\1 {max_inflight}", text)
    config.write_text(text)
    return folder


def measure(units: int, args: argparse.Namespace) -> dict:
    batch_delay_s, timeout_s, keep = args.batch_delay_s, args.timeout_s, args.keep
    runs = Path(tempfile.mkdtemp(prefix="octopipe-batch1m-"))
    pipeline = pipeline_copy(runs, args.chunk_size, args.max_inflight)
    emulator = EmulatorProcess(batch_delay_s)
    env = {**os.environ, "OCTOPIPE_EMULATOR_URL": emulator.url}
    common = ["--runs-dir", str(runs)]
    sample_s = max(0.5, units / 100_000)
    try:
        init = run_child(
            [
                OCTOPIPE,
                "init",
                str(pipeline),
                "--run",
                "big",
                "--repeat",
                str(units),
                "--provider",
                "fake",
                "--mode",
                "batch",
                "--json",
                *common,
            ],
            env,
            timeout_s,
            sample_s,
        )
        _check(init, "init")
        run_argv = ["run", "big", "--batch", "--provider", "fake", "--poll-interval", "1"]
        run = run_child(
            [OCTOPIPE, *run_argv, "--yes", "--quiet", *common],
            env,
            timeout_s,
            sample_s,
        )
        emulator_peak = emulator.peak_rss_mb()
        emulator_cpu = emulator.cpu_s()
        status = json.loads(
            subprocess.run(
                [OCTOPIPE, "status", "big", "--json", *common],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
    finally:
        emulator.stop()
        if keep:
            print(f"runs kept in {runs}", file=sys.stderr)
        else:
            shutil.rmtree(runs, ignore_errors=True)
    cpu = init.cpu_s + run.cpu_s
    return {
        "units": units,
        "chunk_size": args.chunk_size or 50_000,
        "max_inflight_batches": args.max_inflight or 10,
        "run_exit_code": run.returncode,
        "status": status["status"],
        "valid": status["valid"],
        "failed": status["failed"],
        "batches": status.get("batch_counts", {}),
        "wall_s": round(init.wall_s + run.wall_s, 1),
        "init_s": round(init.wall_s, 1),
        "run_s": round(run.wall_s, 1),
        "cpu_s": round(cpu, 1),
        "init_cpu_s": round(init.cpu_s, 1),
        "run_cpu_s": round(run.cpu_s, 1),
        "cpu_us_per_unit": round(cpu / units * 1e6, 1),
        "run_cpu_us_per_unit": round(run.cpu_s / units * 1e6, 1),
        "peak_rss_mb": round(max(init.peak_rss_mb, run.peak_rss_mb), 1),
        "init_peak_rss_mb": round(init.peak_rss_mb, 1),
        "run_peak_rss_mb": round(run.peak_rss_mb, 1),
        "run_rss_timeline_mb": _thin(run.rss_timeline_mb, 12),
        "emulator_peak_rss_mb": None if emulator_peak is None else round(emulator_peak, 1),
        "emulator_cpu_s": None if emulator_cpu is None else round(emulator_cpu, 1),
        "run_stderr_tail": run.stderr.strip().splitlines()[-5:] if run.returncode else [],
    }


def _check(child: Child, what: str) -> None:
    if child.returncode != 0:
        raise RuntimeError(f"{what} exited {child.returncode}: {child.stderr.strip()[-2000:]}")


def _thin(values: list[float], n: int) -> list[float]:
    """About ``n`` evenly spaced samples, the last one included."""
    if len(values) <= n:
        return [round(v) for v in values]
    step = len(values) / n
    return [round(values[int(i * step)]) for i in range(n)] + [round(values[-1])]


def ok(result: dict) -> bool:
    return result["valid"] == result["units"] and result["peak_rss_mb"] < BAR_MB


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-emulator":
        serve_emulator(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument(
        "--flat", action="store_true", help="run 100,000 then 1,000,000 units and compare"
    )
    parser.add_argument("--batch-delay-s", type=float, default=1.0)
    parser.add_argument("--timeout-s", type=float, default=3600.0, help="per subprocess")
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    parser.add_argument("--chunk-size", type=int, help="override processing.chunk_size (50000)")
    parser.add_argument("--max-inflight", type=int, help="override api.max_inflight_batches (10)")
    args = parser.parse_args()
    sizes = [100_000, 1_000_000] if args.flat else [args.units]
    results = []
    for units in sizes:
        result = measure(units, args)
        results.append(result)
        print(json.dumps(result), file=sys.stderr, flush=True)
    summary: dict = {"runs": results, "bar_mb": BAR_MB, "ok": all(ok(r) for r in results)}
    if len(results) > 1:
        small, big = results[0], results[-1]
        summary["peak_rss_growth_mb"] = round(big["peak_rss_mb"] - small["peak_rss_mb"], 1)
    json.dump(summary, sys.stdout, indent=2)
    print()
    sys.exit(0 if summary["ok"] else 1)


if __name__ == "__main__":
    main()
