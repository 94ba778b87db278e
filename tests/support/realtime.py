"""Support for the realtime tests (``tests/engine/test_realtime_*.py``).

Everything goes to the local emulator on 127.0.0.1 through the vendors' real SDKs: no network,
no API key. The pieces:

- ``copy_example`` / ``make_run``: a private copy of an example pipeline (config edited through
  a dict), and a run created from it with ``engine.create.create_run``.
- ``walk_answer`` / ``card_answer``: deterministic answer functions for the emulator (the
  examples' own ``emulator_answers.py``, run only when named like ``--answers`` names them,
  draw unseeded random mistakes); ``card_verdict`` tells
  which hands ``card_answer`` plays wrong, and how.
- ``Lane`` / ``make_lane``: random_walk reached through one SDK (``fake:<vendor>``, or
  ``openai-compatible`` with ``api.base_url`` pointing at an emulator).
- ``drive``: one pass of the runner in this process through ``providers_setup.realtime_executor``
  (the same path as ``octopipe run``), keeping the emulator (its stats and request log) and the
  executor (its pacers) for the assertions.
- ``check_ledger``: the invariants every test ends with (verify clean, every unit terminal at
  every step exactly once, attempts numbered once per unit-step, cost = sum of attempts).
- ``child_main`` / ``start_child``: a runner in a forked child, with emulator latency (which
  ``octopipe run`` cannot set), for the kill -9 test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import socket
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import octopipe.emulator as emulator_package
from octopipe.core.costs import TokenCounts, cost_usd
from octopipe.core.registry import load_registry
from octopipe.core.states import UnitStepState
from octopipe.emulator import (
    EmulatorConfig,
    EmulatorRequest,
    EmulatorThread,
    default_answer,
)
from octopipe.emulator.answers import load_answer_hook
from octopipe.engine import providers_setup
from octopipe.engine.create import RunOptions, create_run
from octopipe.engine.paths import RunPaths
from octopipe.engine.realtime import RealtimeExecutor, RealtimeOptions
from octopipe.engine.runner import RunContext, Runner, RunOutcome
from octopipe.store.ledger import Ledger

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
VENDORS = ("openai", "anthropic", "gemini")
TERMINAL = (UnitStepState.VALID, UnitStepState.EXHAUSTED)

# A model each vendor really serves, so every emulated call is priced as that vendor would.
VENDOR_MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "gemini": "gemini-2.5-flash",
}


# --- pipelines and runs ------------------------------------------------------------------------


def copy_example(
    name: str, dest: Path, edit: Callable[[dict[str, Any]], None] | None = None
) -> Path:
    """A private copy of ``examples/<name>``; ``edit`` changes its parsed config in place."""
    target = dest / name
    shutil.copytree(EXAMPLES / name, target)
    if edit is not None:
        config_file = target / "config.yaml"
        config = yaml.safe_load(config_file.read_text())
        edit(config)
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def set_keys(config: dict[str, Any], path: str, value: Any) -> None:
    """``set_keys(config, "api.retry.initial_delay_seconds", 0.05)``."""
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def fast_retries(config: dict[str, Any]) -> None:
    """Short in-call backoff so transient faults cost milliseconds, not seconds."""
    set_keys(config, "api.retry.initial_delay_seconds", 0.05)
    set_keys(config, "api.retry.max_delay_seconds", 0.2)


def make_run(pipeline: Path, runs: Path, name: str = "r1", **options: Any) -> RunPaths:
    options.setdefault("mode", "realtime")
    return create_run(pipeline, runs, RunOptions(name=name, **options)).paths


# --- deterministic answers ---------------------------------------------------------------------

_TRAIL = re.compile(r"in order:\n([0-9, ]+)")


def walk_answer(request: EmulatorRequest) -> str | dict[str, Any]:
    """What a careful model answers for random_walk's ``report`` step."""
    match = _TRAIL.search(request.prompt)
    if match is None:
        return default_answer(request)
    trail = [int(x) for x in match.group(1).split(",")]
    end = trail[-1]
    return {
        "end_square": end,
        "move_count": len(trail) - 1,
        "ending": "home" if end >= 10 else "lost",
    }


def card_verdict(opening: list[int], pile: list[int], stop_at: int) -> str:
    """How ``CardAnswers`` plays this hand: ``right``, ``miscount`` or ``overdraw`` (a pure
    function of the hand, so a test can tell from a unit's record which answer it got)."""
    key = json.dumps([opening, pile, stop_at]).encode()
    return ("right", "right", "miscount", "overdraw")[hashlib.sha256(key).digest()[0] % 4]


def card_strategy_draws(opening: list[int], pile: list[int], stop_at: int) -> int:
    drawn = 0
    while drawn < len(pile) and sum(opening) + sum(pile[:drawn]) < stop_at:
        drawn += 1
    return drawn


def card_answer(request: EmulatorRequest) -> str | dict[str, Any]:
    """card_game's ``play`` step: right for some hands, a miscounted total (fails
    ``check_play``) or a strategy broken (fails ``check_strategy``) for others."""
    opening = re.search(r"Your opening cards: ([0-9, ]+) \(", request.prompt)
    pile = re.search(r"top card first: ([0-9, ]+)\.", request.prompt)
    stop = re.search(r"below (\d+), then stop", request.prompt)
    if not (opening and pile and stop):
        return default_answer(request)
    hand = [int(x) for x in re.findall(r"\d+", opening.group(1))]
    cards = [int(x) for x in re.findall(r"\d+", pile.group(1))]
    stop_at = int(stop.group(1))
    verdict = card_verdict(hand, cards, stop_at)
    drawn = card_strategy_draws(hand, cards, stop_at)
    if verdict == "overdraw":
        drawn = drawn + 1 if drawn < len(cards) else drawn - 1
    total = sum(hand) + sum(cards[:drawn])
    if verdict == "miscount":
        total += 1
    moves = [f"draw {c}" for c in cards[:drawn]] + ["stop"]
    return {"cards_drawn": drawn, "final_total": total, "busted": total > 19, "moves": moves}


# --- driving a run in this process --------------------------------------------------------------


@dataclass
class Drive:
    """What one ``drive`` saw: the runner's outcome, the emulator and the executor it used."""

    outcome: RunOutcome
    emulator: EmulatorThread | None
    executors: list[RealtimeExecutor] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def stats(self) -> dict[str, Any]:
        assert self.emulator is not None
        return self.emulator.stats()

    @property
    def executor(self) -> RealtimeExecutor:
        return self.executors[-1]


@contextlib.contextmanager
def _recording_emulators() -> Iterator[list[EmulatorThread]]:
    """Keep every ``EmulatorThread`` that ``realtime_executor`` starts (for its stats)."""
    started: list[EmulatorThread] = []
    original = emulator_package.EmulatorThread

    class Recording(original):  # type: ignore[misc, valid-type]
        def start(self) -> EmulatorThread:
            started.append(self)
            return super().start()

    emulator_package.EmulatorThread = Recording  # type: ignore[misc]
    try:
        yield started
    finally:
        emulator_package.EmulatorThread = original  # type: ignore[misc]


def drive(
    paths: RunPaths,
    options: RealtimeOptions,
    emulator_config: EmulatorConfig | None = None,
    *,
    emulator: EmulatorThread | None = None,
    export: bool = True,
    answers: Path | None = None,
) -> Drive:
    """Run the runner once (to completion or a pause), as ``octopipe run`` would. For a
    ``fake`` provider the emulator is started with ``emulator_config`` (and the answer hook in
    the file ``answers``, as ``--answers`` names it); for a real provider name pass the already
    running ``emulator`` its config points at (for its stats)."""
    executors: list[RealtimeExecutor] = []
    t0 = time.monotonic()
    with (
        _recording_emulators() as started,
        providers_setup.realtime_executor(
            options,
            answers=load_answer_hook(answers) if answers is not None else None,
            emulator_config=emulator_config,
        ) as factory,
    ):

        def make(ctx: RunContext) -> Any:
            executor = factory(ctx)
            executors.append(executor)  # type: ignore[arg-type]
            return executor

        outcome = Runner(paths, executor=make, export=export).run()
    used = started[0] if started else emulator
    return Drive(outcome, used, executors, time.monotonic() - t0)


# --- one pipeline reached through each vendor's SDK ---------------------------------------------

COMPATIBLE = "openai-compatible"
LANES = (*VENDORS, COMPATIBLE)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Lane:
    """random_walk reached through one SDK: ``fake:<vendor>`` (the emulator started by
    ``realtime_executor``) or ``openai-compatible`` (the config's ``api.base_url`` pointing at
    an emulator on a fixed port, started here for each drive, as a user's own server would be)."""

    name: str
    pipeline: Path
    port: int | None = None

    def options(self, **overrides: Any) -> RealtimeOptions:
        if self.name == COMPATIBLE:
            return RealtimeOptions(**overrides)
        return RealtimeOptions(
            provider=f"fake:{self.name}", model=VENDOR_MODELS[self.name], **overrides
        )

    def drive(self, paths: RunPaths, config: EmulatorConfig, **overrides: Any) -> Drive:
        if self.name != COMPATIBLE:
            return drive(paths, self.options(**overrides), config)
        assert self.port is not None
        with EmulatorThread(dataclasses.replace(config, port=self.port)) as emulator:
            return drive(paths, self.options(**overrides), emulator=emulator)


def make_lane(name: str, tmp: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Lane:
    port = free_port() if name == COMPATIBLE else None

    def edit_config(config: dict[str, Any]) -> None:
        fast_retries(config)
        if edit is not None:
            edit(config)
        if port is not None:
            set_keys(config, "api.provider", COMPATIBLE)
            set_keys(config, "api.base_url", f"http://127.0.0.1:{port}/openai/v1")
            set_keys(config, "api.model", "local-model")

    return Lane(name, copy_example("random_walk", tmp / f"lane_{name}", edit_config), port)


def trace_lines(paths: RunPaths) -> list[dict[str, Any]]:
    if not paths.trace.exists():
        return []
    return [json.loads(line) for line in paths.trace.read_text().splitlines() if line.strip()]


# --- the invariants every realtime test ends with -----------------------------------------------


@dataclass
class LedgerCheck:
    counts: dict[int, dict[UnitStepState, int]]
    status: str
    reason: str | None
    cost_usd: float
    attempts: int


def check_ledger(
    paths: RunPaths, *, finished: bool = True, after_kill: bool = False
) -> LedgerCheck:
    """Verify clean; every unit at every step exactly once (and terminal when ``finished``;
    nothing in flight unless the runner was killed); attempts numbered 1..n once per unit-step;
    valid at most once; the ledger's cost the sum of its attempts, each repriced from its
    stored usage."""
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        report = ledger.verify()
        assert report.ok, report.to_dict()
        counts = ledger.counts()
        info = ledger.run_info()
        totals = ledger.cost_totals()
    finally:
        ledger.close()
    for step in report.steps:
        live = step.valid + step.retrying + step.failed + step.pending + step.in_flight
        assert live == step.expected, (step.name, step)
        assert after_kill or step.in_flight == 0, (step.name, step)
        if finished:
            assert step.pending == step.retrying == 0, (step.name, step)

    conn = sqlite3.connect(f"file:{paths.ledger}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT uid, step_idx, attempt_no, outcome FROM attempts WHERE mode != 'local'"
        ).fetchall()
        states = conn.execute("SELECT uid, step_idx, state, attempts FROM unit_steps").fetchall()
        priced = conn.execute(
            "SELECT provider, model, mode, input_tokens, output_tokens, cached_tokens, cost_usd, "
            "response_blob IS NULL FROM attempts WHERE mode != 'local'"
        ).fetchall()
    finally:
        conn.close()
    by_unit_step: dict[tuple[int, int], list[int]] = {}
    valid_rows: Counter[tuple[int, int]] = Counter()
    for uid, step_idx, attempt_no, outcome in rows:
        by_unit_step.setdefault((uid, step_idx), []).append(attempt_no)
        if outcome == "valid":
            valid_rows[(uid, step_idx)] += 1
    for key, numbers in by_unit_step.items():
        assert sorted(numbers) == list(range(1, len(numbers) + 1)), (key, numbers)
    assert not [k for k, n in valid_rows.items() if n > 1], "a unit-step has two valid attempts"
    for uid, step_idx, state, attempts in states:
        recorded = len(by_unit_step.get((uid, step_idx), []))
        if recorded:  # local successes leave no attempt row; LLM attempts always do
            assert attempts == recorded, (uid, step_idx, attempts, recorded)
        if state == "valid" and recorded:
            assert valid_rows[(uid, step_idx)] == 1, (uid, step_idx)

    registry = load_registry()
    expected_cost = 0.0
    for provider, model, mode, tin, tout, tcached, stored, no_answer in priced:
        if no_answer:  # the request failed (error, timeout): nothing used, nothing billed
            assert (tin, tout, tcached, stored) == (0, 0, 0, 0.0), (provider, model, stored)
            continue
        again = cost_usd(registry, provider, model, TokenCounts(tin, tout, tcached), mode)
        if stored is None:
            assert again is None, (provider, model)
            continue
        assert again is not None and abs(again - stored) < 1e-12, (provider, model, stored, again)
        expected_cost += stored
    assert abs(totals.known_usd - expected_cost) < 1e-9, (totals.known_usd, expected_cost)
    return LedgerCheck(
        counts, info.status.value, info.status_reason, totals.known_usd, totals.attempts
    )


def step_states(paths: RunPaths, step: str) -> dict[str, UnitStepState]:
    """unit_id -> state at ``step``."""
    conn = sqlite3.connect(f"file:{paths.ledger}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT u.unit_id, s.state FROM unit_steps s JOIN units u ON u.uid = s.uid "
            "JOIN steps st ON st.idx = s.step_idx WHERE st.name = ?",
            (step,),
        ).fetchall()
    finally:
        conn.close()
    return {unit_id: UnitStepState(state) for unit_id, state in rows}


def ledger_rows(paths: RunPaths, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{paths.ledger}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


# --- octopipe as a subprocess ---------------------------------------------------------------------


def octopipe_command() -> list[str]:
    script = Path(sys.executable).with_name("octopipe")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "from octopipe.cli import main; main()"]


def offline_env(**extra: str) -> dict[str, str]:
    """The environment for a child octopipe: no real keys, no proxies, no base-URL overrides."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and not k.endswith("_BASE_URL") and "PROXY" not in k.upper()
    }
    env.update(extra)
    return env


# --- a runner in a child process (kill -9 test) ------------------------------------------------


def child_main(run: str, vendor: str, latency_ms: float, concurrency: int) -> None:
    """Drive ``run`` with the emulator answering after ``latency_ms`` (``octopipe run`` has no
    flag for emulator latency). Meant for a forked child that the test kills with SIGKILL."""
    paths = RunPaths(Path(run))
    config = EmulatorConfig(latency_ms=latency_ms, jitter_ms=latency_ms / 2, answer_fn=walk_answer)
    options = RealtimeOptions(provider=f"fake:{vendor}", concurrency=concurrency)
    with providers_setup.realtime_executor(options, emulator_config=config) as f:
        Runner(paths, executor=f).run()


def start_child(run: Path, vendor: str, latency_ms: float, concurrency: int) -> Any:
    """``child_main`` in a forked process: the SDKs this process imported come along, so the
    child starts in milliseconds instead of seconds."""
    context = multiprocessing.get_context("fork")
    child = context.Process(target=child_main, args=(str(run), vendor, latency_ms, concurrency))
    child.start()
    return child


def realtime_attempts(paths: RunPaths) -> int:
    if not paths.ledger.exists():
        return 0
    try:
        rows = ledger_rows(paths, "SELECT COUNT(*) FROM attempts WHERE mode = 'realtime'")
    except sqlite3.Error:
        return 0
    return int(rows[0][0])
