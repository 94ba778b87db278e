"""Fixture runs in every state, made with the real engine, for the TUI's Pilot tests (the
fixtures are re-exported by conftest.py; helpers are imported as ``from support.tui import ...``)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.worker import WorkerCancelled

from octopipe.core.commands import Kill
from octopipe.core.states import RunEvent
from octopipe.engine.control import change_run
from octopipe.engine.paths import RunPaths
from octopipe.store.ledger import Ledger
from octopipe.store.lock import RunLock
from octopipe.tui.app import OctopipeApp, build_app
from octopipe.tui.port import RunControl, RunQueries
from support.admin import expression_pipeline, fail_llm_units, llm_pipeline, make_run

FAILING = "10 // ((n + 1) % 3)"  # fails for every item whose n % 3 == 2
PAUSE_REASONS = {
    "paused_request": "paused by request",
    "paused_cost": "cost cap reached ($0.50 of $0.50)",
    "paused_timeout": "time limit reached (30m)",
    "paused_quota": "provider quota exhausted (openai)",
}
ANSWERS = {"item000": '{"score": 2}', "item001": "not json at all", "item002": None}


def _set_status(paths: RunPaths, *events: tuple[RunEvent, str | None]) -> None:
    ledger = Ledger.open(paths.ledger)
    try:
        for event, reason in events:
            ledger.set_run_status(event, reason)
    finally:
        ledger.close()


class Runs:
    """The runs folder with one run per state; ``running`` holds its lock while in use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "runs"
        self.pipelines = root / "pipelines"
        self.lock: RunLock | None = None

    def build(self) -> None:
        expr = expression_pipeline(self.pipelines / "counter", n_items=6)
        failing = expression_pipeline(self.pipelines / "failing", n_items=9, inverse=FAILING)
        make_run(expr, self.dir, "complete")
        make_run(failing, self.dir, "with_failures")
        make_run(expr, self.dir, "pending", drive=False)
        for name, reason in PAUSE_REASONS.items():
            paths = make_run(expr, self.dir, name, drive=False)
            _set_status(paths, (RunEvent.START, None), (RunEvent.PAUSE, reason))
        _set_status(
            make_run(expr, self.dir, "failed", drive=False),
            (RunEvent.START, None),
            (RunEvent.FAIL, "provider refused the API key (401)"),
        )
        killed = make_run(expr, self.dir, "killed", drive=False)
        change_run(killed, Kill())
        _set_status(make_run(expr, self.dir, "detached", drive=False), (RunEvent.START, None))
        running = make_run(expr, self.dir, "running", drive=False)
        _set_status(running, (RunEvent.START, None))
        judged = make_run(llm_pipeline(self.pipelines / "judged", n_items=4), self.dir, "judged")
        fail_llm_units(judged, "judge", ANSWERS)

    def hold_running(self) -> None:
        self.lock = RunLock(self.dir / "running")
        assert self.lock.try_acquire()

    def dir_paths(self, name: str) -> RunPaths:
        return RunPaths(self.dir / name)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


@pytest.fixture(scope="session")
def built_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = Runs(tmp_path_factory.mktemp("tui-runs"))
    runs.build()
    return runs.root


@pytest.fixture
def runs(built_runs: Path, tmp_path: Path) -> Iterator[Runs]:
    """A private copy of the fixture runs (tests change them), ``running`` held live."""
    subprocess.run(["cp", "-a", str(built_runs) + "/.", str(tmp_path)], check=True)
    copy = Runs(tmp_path)
    copy.hold_running()
    yield copy
    copy.release()


class Spawned:
    """Stands in for ``octopipe run ... --detach`` in action tests: records the argv."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        return subprocess.CompletedProcess(
            argv, 0, f"run {argv[1]} continues in the background", ""
        )


@pytest.fixture
def spawned() -> Spawned:
    return Spawned()


@pytest.fixture
def make_app(runs: Runs, spawned: Spawned):
    def make(*, read_only: bool = False, start_run: str | None = None) -> OctopipeApp:
        from octopipe.tui.port import ReadOnlyControl

        queries = RunQueries(runs.dir, runs.pipelines)
        control_cls = ReadOnlyControl if read_only else RunControl
        control = control_cls(runs.dir, spawn=spawned, wait_s=2.0)
        return build_app(queries, control, read_only=read_only, start_run=start_run, refresh_s=0.5)

    return make


async def settle(pilot) -> None:
    """Let workers finish and their results reach the widgets (a worker replaced by a newer
    one of its group is cancelled: that is how a refresh supersedes the last)."""
    for _ in range(4):
        for worker in list(pilot.app.workers):
            with contextlib.suppress(WorkerCancelled):
                await worker.wait()
        await pilot.pause()
