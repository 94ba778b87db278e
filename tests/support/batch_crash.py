"""Crash harness for batch mode: kill -9 ``octopipe run --batch`` at seeded instants, resume.

Used by ``tests/engine/test_batch_crash.py`` (a short schedule) and
``bench/batch_crash_harness.py`` (5,000 units, 30 kills). The emulator runs in this process
(an ``EmulatorThread`` with a batch delay of a few seconds), so its batches outlive every
runner, exactly as a provider's do; the runner is the real ``octopipe`` command in its own
process, reaching the emulator through ``OCTOPIPE_EMULATOR_URL``.

Kinds of kill, drawn from ``random.Random(seed)``:

- ``timed``: a uniform instant after the runner took the run lock (start-up, packing,
  submitting, polling, collecting: wherever it lands);
- ``after_submit``: right after the provider accepted a batch, before the ledger recorded its
  id (the crash that creates orphans or duplicates elsewhere), via a line injected into the
  runner;
- ``mid_collect``: after the first slice of a batch's results was recorded, before the rest;
- ``before_collected``: every line recorded, the batch not yet marked collected.

After the last kill the run is resumed to completion and checked: ``verify()`` clean, every
unit valid or exhausted exactly once with attempts numbered 1..n, each attempt's cost its usage
at batch prices, no batch created twice at the emulator (its job ids are exactly the ledger's
provider ids), and the ledger's cost equal to the emulator's answered usage at batch prices.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from octopipe.core.costs import TokenCounts, cost_usd
from octopipe.core.registry import load_registry
from octopipe.emulator import EmulatorConfig, EmulatorRequest, EmulatorThread
from octopipe.engine.paths import RunPaths
from octopipe.store.ledger import Ledger
from octopipe.store.lock import is_held
from support.crash import kill9, wait_for
from support.realtime import (
    check_ledger,
    copy_example,
    ledger_rows,
    octopipe_command,
    offline_env,
    set_keys,
    walk_answer,
)

MODEL = "gpt-4o-mini"
KINDS = ("timed", "timed", "after_submit", "mid_collect", "before_collected")

_PRELUDE = {
    "after_submit": """
import os, signal
from octopipe.store.ledger import Ledger
from octopipe.core.states import BatchEvent
_advance = Ledger.advance_batch
def advance_batch(self, local_id, event, **kw):
    if event is BatchEvent.SUBMIT_OK:
        os.kill(os.getpid(), signal.SIGKILL)
    return _advance(self, local_id, event, **kw)
Ledger.advance_batch = advance_batch
""",
    "mid_collect": """
import os, signal
from octopipe.engine import batch_collect
_record = batch_collect.BatchRecorder.record
def record(self, batch, lines, tally):
    _record(self, batch, lines, tally)
    if tally.seen:
        os.kill(os.getpid(), signal.SIGKILL)
batch_collect.BatchRecorder.record = record
""",
    "before_collected": """
import os, signal
from octopipe.engine import batch_collect
def finish(self, batch, tally):
    os.kill(os.getpid(), signal.SIGKILL)
batch_collect.BatchRecorder.finish = finish
""",
}


class SometimesWrong:
    """``walk_answer``, except that one prompt in ``every`` is answered wrongly the first time
    it is asked (those units fail validation and go into a retry batch)."""

    def __init__(self, every: int = 7) -> None:
        self.every = every
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, request: EmulatorRequest) -> Any:
        answer = walk_answer(request)
        with self.lock:
            self.seen[request.prompt] += 1
            first = self.seen[request.prompt] == 1
        if first and isinstance(answer, dict) and hash(request.prompt) % self.every == 0:
            return {**answer, "move_count": answer["move_count"] + 1}
        return answer


@dataclass
class KillRecord:
    kind: str
    delay_s: float
    killed: bool
    exit_code: int | None
    in_flight: int
    verify_ok: bool


@dataclass
class BatchCrashResult:
    units: int
    kills: list[KillRecord] = field(default_factory=list)
    resumes: int = 0
    problems: list[str] = field(default_factory=list)
    batches_created: int = 0
    ledger_batches: Counter[str] = field(default_factory=Counter)
    cost_usd: float = 0.0
    emulator_cost_usd: float = 0.0
    downloads_cut: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "units": self.units,
            "kills": len(self.kills),
            "kills_landed": sum(k.killed for k in self.kills),
            "kills_by_kind": dict(Counter(k.kind for k in self.kills if k.killed)),
            "resumes": self.resumes,
            "batches_created_at_emulator": self.batches_created,
            "ledger_batches": dict(self.ledger_batches),
            "cost_usd": round(self.cost_usd, 9),
            "emulator_usage_at_batch_prices_usd": round(self.emulator_cost_usd, 9),
            "downloads_cut": self.downloads_cut,
            "seconds": round(self.seconds, 1),
            "problems": self.problems,
        }


class BatchHarness:
    def __init__(
        self,
        work: Path,
        *,
        units: int,
        kills: int,
        seed: int,
        batch_delay_s: float = 2.0,
        chunk: int = 500,
        poll_s: float = 0.3,
        max_window_s: float = 6.0,
        vendor: str = "openai",
        truncate_rate: float = 0.0,
    ) -> None:
        self.vendor = vendor
        self.truncate_rate = truncate_rate  # share of results downloads the emulator cuts
        self.work = work
        self.units = units
        self.kills = kills
        self.rng = random.Random(seed)
        self.batch_delay_s = batch_delay_s
        self.chunk = chunk
        self.poll_s = poll_s
        self.max_window_s = max_window_s

    def _pipeline(self) -> Path:
        def edit(config: dict[str, Any]) -> None:
            set_keys(config, "processing.repeat", self.units)
            set_keys(config, "processing.chunk_size", self.chunk)
            set_keys(config, "api.max_inflight_batches", 4)
            set_keys(config, "api.model", MODEL)

        return copy_example("random_walk", self.work, edit)

    def _command(self, kind: str, target: str) -> list[str]:
        provider = f"fake:{self.vendor}"
        args = ["run", target, "--batch", "--provider", provider, "--yes", "--quiet"]
        args += ["--runs-dir", str(self.work / "runs"), "--poll-interval", str(self.poll_s)]
        if kind in _PRELUDE:
            import sys

            prelude = _PRELUDE[kind] + "\nfrom octopipe.cli import main\nmain()\n"
            return [sys.executable, "-c", prelude, *args]
        return [*octopipe_command(), *args]

    def run(self) -> BatchCrashResult:
        t0 = time.monotonic()
        result = BatchCrashResult(self.units)
        pipeline = self._pipeline()
        run_dir = self.work / "runs" / "crash"
        paths = RunPaths(run_dir)
        config = EmulatorConfig(
            answer_fn=SometimesWrong(),
            batch_delay_s=self.batch_delay_s,
            batch_truncate_rate=self.truncate_rate,
        )
        with EmulatorThread(config) as emulator:
            env = offline_env(OCTOPIPE_EMULATOR_URL=emulator.emulator.root_url)
            created = subprocess.run(
                [
                    *octopipe_command(),
                    "init",
                    str(pipeline),
                    "--run",
                    "crash",
                    "--runs-dir",
                    str(self.work / "runs"),
                    "--mode",
                    "batch",
                    "--provider",
                    "fake",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if created.returncode != 0:
                result.problems.append(f"init failed: {created.stderr[-500:]}")
                return result
            for _ in range(3 * self.kills):  # until ``kills`` landed, or the run is done
                kind = self.rng.choice(KINDS)
                delay = self.rng.uniform(0.0, self.max_window_s)
                result.kills.append(self._kill_once(kind, delay, paths, env))
                result.resumes += 1
                if sum(k.killed for k in result.kills) >= self.kills or self._complete(paths):
                    break
            final = subprocess.run(
                self._command("resume", "crash"),
                env=env,
                capture_output=True,
                text=True,
                timeout=1800,
            )
            result.resumes += 1
            if final.returncode not in (0, 1):
                result.problems.append(
                    f"final resume exited {final.returncode}: {final.stderr[-800:]}"
                )
            self._check(paths, emulator, result)
        result.seconds = time.monotonic() - t0
        return result

    def _kill_once(
        self, kind: str, delay: float, paths: RunPaths, env: dict[str, str]
    ) -> KillRecord:
        proc = subprocess.Popen(
            self._command(kind, "crash"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        killed = False
        if kind == "timed":
            wait_for(lambda: is_held(paths.root) or proc.poll() is not None, 60)
            end = time.monotonic() + delay
            while time.monotonic() < end and proc.poll() is None:
                time.sleep(0.01)
            killed = kill9(proc)
        else:
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                killed = kill9(proc)
            killed = killed or proc.returncode == -signal.SIGKILL
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        with Ledger.open(paths.ledger, readonly=True) as ledger:
            report = ledger.verify()
            in_flight = sum(s.in_flight for s in report.steps)
        return KillRecord(kind, delay, killed, proc.returncode, in_flight, report.ok)

    def _complete(self, paths: RunPaths) -> bool:
        with Ledger.open(paths.ledger, readonly=True) as ledger:
            return ledger.run_info().status.value == "complete"

    def _check(self, paths: RunPaths, emulator: EmulatorThread, result: BatchCrashResult) -> None:
        for kill in result.kills:
            if not kill.verify_ok:
                result.problems.append(f"verify failed after a {kill.kind} kill")
        try:
            check = check_ledger(paths)
        except AssertionError as exc:
            result.problems.append(f"ledger check: {exc}")
            return
        result.cost_usd = check.cost_usd
        rows = ledger_rows(paths, "SELECT state, provider_batch_id FROM batches")
        result.ledger_batches = Counter(state for state, _ in rows)
        ledger_ids = [pid for _, pid in rows if pid is not None]
        jobs = emulator.emulator.core.batches.jobs
        result.batches_created = len(jobs)
        if sorted(ledger_ids) != sorted(jobs):
            result.problems.append(
                f"emulator batches {sorted(jobs)} != ledger batches {sorted(ledger_ids)}"
            )
        if len(set(ledger_ids)) != len(ledger_ids):
            result.problems.append("a provider batch is recorded twice")
        result.emulator_cost_usd = emulator_cost(emulator)
        result.downloads_cut = int(emulator.stats().get("batch_downloads_cut", 0))
        if abs(result.emulator_cost_usd - result.cost_usd) > 1e-9:
            result.problems.append(
                f"ledger cost {result.cost_usd!r} != emulator usage at batch prices "
                f"{result.emulator_cost_usd!r}"
            )
        valid = ledger_rows(
            paths,
            "SELECT COUNT(*) FROM unit_steps WHERE step_idx = 1 "
            "AND state IN ('valid', 'exhausted')",
        )[0][0]
        if valid != self.units:
            result.problems.append(f"{valid} units terminal at the LLM step, not {self.units}")


def _usage(body: Any) -> TokenCounts:
    """Tokens an answer body reports, in any of the three vendors' shapes."""
    if "usageMetadata" in body:  # Gemini
        meta = body["usageMetadata"]
        return TokenCounts(
            meta.get("promptTokenCount", 0),
            meta.get("candidatesTokenCount", 0) + meta.get("thoughtsTokenCount", 0),
            meta.get("cachedContentTokenCount", 0),
        )
    usage = body["usage"]
    if "prompt_tokens" in usage:  # OpenAI
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        return TokenCounts(usage["prompt_tokens"], usage["completion_tokens"], cached)
    cached = usage.get("cache_read_input_tokens") or 0  # Anthropic: input excludes cache reads
    created = usage.get("cache_creation_input_tokens") or 0
    return TokenCounts(usage["input_tokens"] + cached + created, usage["output_tokens"], cached)


def emulator_cost(emulator: EmulatorThread) -> float:
    """What the emulator's answered batch requests cost at batch prices."""
    registry = load_registry()
    total = 0.0
    for job in emulator.emulator.core.batches.jobs.values():
        for outcome in job.outcomes or []:
            reply = outcome.reply
            if reply is None or reply.status != 200:
                continue
            counts = _usage(reply.body)
            cost = cost_usd(registry, "fake", MODEL, counts, "batch")
            assert cost is not None
            total += cost
    return total


__all__ = ["BatchCrashResult", "BatchHarness", "emulator_cost", "os"]
