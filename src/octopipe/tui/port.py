"""The TUI's one port to the engine: what it reads (``RunQueries``) and how it changes runs
(``RunControl``). Screens call nothing else, so adapting the TUI to a new engine API (typed
commands, a store protocol) is a change to this file only.

Every read goes through the engine's read-only queries; every change through the engine's
commands (``engine.control.change_run_detailed``: a live runner applies it, otherwise it is
applied under the run lock), or through the CLI itself for what starts a runner (``octopipe
run ... --detach``), exactly as a user would type it. Each change returns the equivalent CLI
command so the screen can show it.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from octopipe.core.commands import Command, Kill, Pause, Rename, Retry
from octopipe.core.states import UnitStepState
from octopipe.engine import browse
from octopipe.engine.paths import RunPaths, default_runs_dir, resolve_run
from octopipe.errors import OctopipeError, UsageError

CONFIG_NAMES = ("config.yaml", "config.yml")


class ReadOnlyRefused(UsageError):
    """A change asked of a TUI started with ``--read-only``."""

    def __init__(self, what: str) -> None:
        super().__init__(f"read-only mode (--read-only): {what} is not allowed here")


@dataclass(frozen=True)
class ActionResult:
    """What a change did, and the command a user would type to do the same."""

    message: str
    command: str
    ok: bool = True


@dataclass(frozen=True)
class PipelineEntry:
    name: str
    path: Path
    steps: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    units: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class ModelChoice:
    provider: str
    model: str | None  # None: the pipeline's own setting
    label: str


@dataclass(frozen=True)
class LaunchRequest:
    pipeline: Path
    name: str
    provider: str | None = None
    model: str | None = None
    mode: str = "realtime"
    max_units: int | None = None
    repeat: int | None = None
    max_cost: float | None = None


def cli(runs_dir: Path, *words: object) -> str:
    """The CLI command for ``words`` (``--runs-dir`` only when it is not the default)."""
    parts = ["octopipe", *(str(w) for w in words)]
    if Path(runs_dir).resolve() != default_runs_dir().resolve():
        parts += ["--runs-dir", str(runs_dir)]
    return shlex.join(parts)


Spawn = Callable[[list[str]], subprocess.CompletedProcess[str]]


def _spawn(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run the CLI (``octopipe ...``) in a child and wait for it to answer (``--detach``
    returns as soon as the runner is started in its own session)."""
    return subprocess.run(
        [sys.executable, "-m", "octopipe", *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


class RunQueries:
    """Read-only access to the runs under ``runs_dir`` (and the pipelines beside them)."""

    def __init__(self, runs_dir: Path, pipelines_dir: Path | None = None) -> None:
        self.runs_dir = Path(runs_dir)
        self.pipelines_dir = Path(pipelines_dir) if pipelines_dir else Path.cwd()
        self._index = browse.RunIndex(self.runs_dir)

    def paths(self, name: str) -> RunPaths:
        return resolve_run(name, self.runs_dir)

    def dashboard(self, include_archived: bool = False) -> list[browse.DashboardRow]:
        return self._index.refresh(include_archived)

    def row(self, name: str) -> browse.DashboardRow:
        paths = self.paths(name)
        return browse.read_row(paths, archived=paths.root.parent.name == "_archive")

    def overview(self, name: str) -> tuple[browse.DashboardRow, dict[str, dict[str, int]]]:
        """The run's row and its units with no attempt left, by step and stage."""
        paths = self.paths(name)
        row = browse.read_row(paths, archived=paths.root.parent.name == "_archive")
        return row, browse.failed_by_stage(paths)

    def units(
        self,
        name: str,
        step_idx: int,
        *,
        states: Sequence[UnitStepState] = (),
        stage: str | None = None,
        prefix: str | None = None,
        after_uid: int = 0,
        after_unit_id: str = "",
        limit: int = 200,
    ) -> list[Any]:
        return browse.units_page(
            self.paths(name),
            step_idx,
            states=tuple(states),
            stage=stage,
            prefix=prefix,
            after_uid=after_uid,
            after_unit_id=after_unit_id,
            limit=limit,
        )

    def unit(self, name: str, unit_id: str) -> browse.UnitDetail | None:
        return browse.unit_detail(self.paths(name), unit_id)

    def log(self, name: str, offset: int | None = None) -> browse.LogChunk:
        return browse.log_tail(self.paths(name).log, offset)

    def report(self, name: str) -> Any:
        from octopipe.engine.report import run_report

        return run_report(self.paths(name))

    def troubleshoot(self, name: str, provider: str | None = None, model: str | None = None) -> Any:
        """One model call about the run's failures (engine.troubleshoot); costs money unless
        the provider is ``fake``."""
        from octopipe.engine.troubleshoot import troubleshoot

        return troubleshoot(self.paths(name), provider=provider, model=model)

    def troubleshoot_models(self) -> list[ModelChoice]:
        """The models troubleshoot (T) may ask: every priced model of a configured provider
        (API key set), cheapest (output, input) first, then the emulator's default model,
        which is the only one (and so the default) when no provider is configured."""
        from octopipe.core.registry import load_registry
        from octopipe.engine.providers_setup import configured_providers
        from octopipe.engine.troubleshoot import cheapest_model

        registry = load_registry()
        priced = []
        for provider in configured_providers():
            for info in registry.models(provider):
                found = registry.rates(provider, info.name, "standard")
                if found is not None:
                    rates = found.base
                    label = (
                        f"{provider}/{info.name}  ${rates.input:g} in / ${rates.output:g} out "
                        "per 1M tokens"
                    )
                    priced.append(
                        ((rates.output, rates.input), ModelChoice(provider, info.name, label))
                    )
        priced.sort(key=lambda item: item[0])
        fake, fake_model = cheapest_model(())  # the emulator's default model
        emulator = ModelChoice(
            fake, fake_model, f"{fake}/{fake_model}  the local emulator, no cost"
        )
        return [choice for _, choice in priced] + [emulator]

    def compare(self, names: Sequence[str]) -> Any:
        from octopipe.engine.compare import compare_runs

        return compare_runs([self.paths(n) for n in names])

    def artifacts(self, name: str) -> list[Path]:
        """Files a user may want to read in the run folder (outputs, logs), ``.gz`` too."""
        root = self.paths(name).root
        wanted = (".txt", ".csv", ".json", ".jsonl", ".md", ".log", ".gz", ".parquet", ".out")
        found = [
            p
            for p in sorted(root.rglob("*"))
            if p.is_file()
            and p.suffix in wanted
            and "config" not in p.relative_to(root).parts[:1]
            and not p.name.startswith(".")
        ]
        return found[:500]

    def pipelines(self) -> list[PipelineEntry]:
        """Pipeline folders under the pipelines folder (one level, and ``pipelines/``),
        each validated as ``octopipe validate`` would (no trial answers are spent)."""
        from octopipe.core.checker import check_pipeline
        from octopipe.core.config import load_pipeline

        seen: list[Path] = []
        for base in (self.pipelines_dir, self.pipelines_dir / "pipelines"):
            if base.is_dir():
                for child in sorted(base.iterdir()):
                    if child.is_dir() and any((child / n).is_file() for n in CONFIG_NAMES):
                        seen.append(child)
        if any((self.pipelines_dir / n).is_file() for n in CONFIG_NAMES):
            seen.insert(0, self.pipelines_dir)
        out = []
        for folder in seen:
            try:
                pipeline = load_pipeline(folder)
                report = check_pipeline(pipeline)
            except OctopipeError as exc:
                out.append(PipelineEntry(folder.name, folder, problems=[exc.message]))
                continue
            out.append(
                PipelineEntry(
                    pipeline.name,
                    folder,
                    steps=[s.name for s in pipeline.steps],
                    problems=[e.render() for e in report.errors],
                    warnings=[p.render() for p in report.problems if p.level != "error"],
                    units=report.units,
                )
            )
        return out

    def step_context(self, folder: Path, step: str) -> str:
        """A step's config and template as text, for pasting into an AI assistant."""
        from octopipe.core.config import load_pipeline
        from octopipe.core.config_models import LLMStep

        pipeline = load_pipeline(folder)
        config = next(
            (folder / n for n in CONFIG_NAMES if (folder / n).is_file()), folder / "config.yaml"
        )
        text = [f"# pipeline {pipeline.name}, step {step}", "", config.read_text()]
        chosen = pipeline.step(step)
        if isinstance(chosen, LLMStep):
            template = pipeline.template_dir / pipeline.template_name(chosen)
            if template.is_file():
                text += ["", f"# template {template.name}", template.read_text()]
        return "\n".join(text)

    def estimate(self, request: LaunchRequest) -> list[str]:
        """The pre-run estimate ``octopipe run`` prints, for the launcher."""
        from octopipe.core.checker import check_pipeline
        from octopipe.core.config import load_pipeline
        from octopipe.engine.estimate import estimate_pipeline

        pipeline = load_pipeline(request.pipeline)
        report = check_pipeline(pipeline, max_units=request.max_units, repeat=request.repeat)
        if not report.ok:
            return ["the pipeline does not validate:", *(f"  {e}" for e in report.errors)]
        provider = (request.provider or "").split(":", 1)[0] or None
        estimate = estimate_pipeline(
            pipeline,
            report,
            "batch" if request.mode == "batch" else "realtime",
            provider=provider,
            model=request.model,
        )
        return estimate.lines()

    def models(self) -> list[ModelChoice]:
        """ "pipeline default" first, then every priced model, cheapest first."""
        from octopipe.core.registry import load_registry

        registry = load_registry()
        priced = []
        for provider in registry.providers():
            for info in registry.models(provider):
                found = registry.rates(provider, info.name, "standard")
                rates = found.base if found is not None else None
                key = (rates.output, rates.input) if rates is not None else (float("inf"),) * 2
                priced.append((key, provider, info.name))
        priced.sort()
        return [
            ModelChoice("", None, "pipeline default"),
            ModelChoice("fake", None, "fake: the local emulator (no API key, no cost)"),
        ] + [ModelChoice(p, m, f"{p}/{m}") for _, p, m in priced if p != "fake"]


class RunControl:
    """Changes to runs, each through the engine, each with its CLI equivalent."""

    read_only = False

    def __init__(self, runs_dir: Path, *, spawn: Spawn = _spawn, wait_s: float = 5.0) -> None:
        self.runs_dir = Path(runs_dir)
        self._spawn = spawn
        self._wait_s = wait_s
        self._starting: dict[str, threading.Event] = {}
        self._starting_lock = threading.Lock()

    def _paths(self, name: str) -> RunPaths:
        return resolve_run(name, self.runs_dir)

    def _change(self, name: str, command: Command, cli_text: str) -> ActionResult:
        """``command`` (one of the typed commands the CLI sends) through the engine: a live
        runner applies it; with none, it is applied under the run's lock."""
        from octopipe.engine.control import change_run_detailed

        self._wait_for_start(name)
        outcome = change_run_detailed(self._paths(name), command, wait_s=self._wait_s)
        return ActionResult(outcome.message, cli_text)

    def pause(self, name: str) -> ActionResult:
        return self._change(name, Pause(), cli(self.runs_dir, "pause", name))

    def kill(self, name: str) -> ActionResult:
        return self._change(name, Kill(), cli(self.runs_dir, "kill", name, "--yes"))

    def rename(self, name: str, display_name: str) -> ActionResult:
        return self._change(
            name,
            Rename(display_name=display_name),
            cli(self.runs_dir, "rename", name, display_name),
        )

    def retry(
        self,
        name: str,
        *,
        step: tuple[int, str] | None = None,
        stage: str | None = None,
        unit_ids: Sequence[str] = (),
    ) -> ActionResult:
        """Requeue failed units (by step, stage, ids): only those."""
        words: list[object] = ["retry", name]
        if step is not None:
            words += ["--step", step[1]]
        if stage is not None:
            words += ["--stage", stage]
        ids = tuple(dict.fromkeys(unit_ids)) or None
        for unit in ids or ():
            words += ["--unit", unit]
        command = Retry(step_idx=None if step is None else step[0], stage=stage, unit_ids=ids)
        return self._change(name, command, cli(self.runs_dir, *words))

    def resume(self, name: str) -> ActionResult:
        """Start a runner for the run in the background (``octopipe run RUN --detach``)."""
        argv = ["run", name, "--detach", "--runs-dir", str(self.runs_dir)]
        return self._run_cli(argv, cli(self.runs_dir, "run", name, "--detach"), name)

    def launch(self, request: LaunchRequest) -> ActionResult:
        """A new run of a pipeline, driven in the background as ``run --detach`` does."""
        words: list[object] = [
            "run",
            str(request.pipeline),
            "--run",
            request.name,
            "--detach",
            "--yes",
            f"--{request.mode}",
        ]
        for flag, value in (
            ("--provider", request.provider),
            ("--model", request.model),
            ("--max-units", request.max_units),
            ("--repeat", request.repeat),
            ("--max-cost", request.max_cost),
        ):
            if value is not None and value != "":
                words += [flag, value]
        argv = [str(w) for w in words] + ["--runs-dir", str(self.runs_dir)]
        return self._run_cli(argv, cli(self.runs_dir, *words), request.name)

    def _wait_for_start(self, name: str) -> None:
        """A change of a run this TUI is starting a runner for waits until ``run --detach``
        has started it (and so written ``runner.starting``, which makes the engine queue the
        change for that runner instead of applying it before the runner undoes it)."""
        with self._starting_lock:
            event = self._starting.get(name)
        if event is not None:
            event.wait(timeout=180)

    def _run_cli(self, argv: list[str], command: str, run: str | None = None) -> ActionResult:
        event = threading.Event()
        if run is not None:
            with self._starting_lock:
                self._starting[run] = event
        try:
            done = self._spawn(argv)
        finally:
            event.set()
            if run is not None:
                with self._starting_lock:
                    if self._starting.get(run) is event:
                        del self._starting[run]
        text = "\n".join(t.strip() for t in (done.stdout, done.stderr) if t.strip())
        if done.returncode != 0:
            raise UsageError(f"{command} failed (exit {done.returncode}): {text or 'no output'}")
        return ActionResult(text or "started", command)

    def archive(self, name: str) -> ActionResult:
        from octopipe.engine.archive import archive_run

        moved = archive_run(self.runs_dir, name)
        return ActionResult(f"archived to {moved.root}", cli(self.runs_dir, "archive", name))

    def unarchive(self, name: str) -> ActionResult:
        from octopipe.engine.archive import unarchive_run

        moved = unarchive_run(self.runs_dir, name)
        return ActionResult(f"back in {moved.root}", cli(self.runs_dir, "unarchive", name))

    def switch_mode(self, name: str, mode: str) -> ActionResult:
        """Record that the run's LLM steps now go ``mode`` (a run with no live runner);
        batches already submitted are still collected. Takes effect on resume."""
        from octopipe.engine.control import update_settings

        update_settings(self._paths(name), mode=mode)
        return ActionResult(
            f"mode is now {mode}; resume the run (R) to go on in {mode} mode",
            cli(self.runs_dir, "run", name, f"--{mode}"),
        )

    def revalidate(self, name: str) -> ActionResult:
        from octopipe.engine.revalidate import revalidate_run

        report = revalidate_run(self._paths(name))
        return ActionResult(
            f"{report.passed} passed, {report.still_failing} still failing, "
            f"{report.unparseable} unparseable, {report.skipped} skipped",
            cli(self.runs_dir, "revalidate", name),
        )

    def export(self, name: str) -> ActionResult:
        return ActionResult(
            browse.export_results(self._paths(name)), cli(self.runs_dir, "export", name)
        )

    def save_diagnostics(self, name: str, markdown: str) -> Path:
        """Write ``markdown`` to ``DIAGNOSTIC.md`` in the run's folder (beside the ledger,
        never in it) and return the path; an existing file is replaced."""
        target = self._paths(name).root / "DIAGNOSTIC.md"
        tmp = target.with_name(".DIAGNOSTIC.md.tmp")
        tmp.write_text(markdown, encoding="utf-8")
        tmp.replace(target)
        return target


class ReadOnlyControl(RunControl):
    """``--read-only``: every change is refused with a message; nothing is touched."""

    read_only = True

    def _change(self, name: str, command: Command, cli_text: str) -> ActionResult:
        raise ReadOnlyRefused(command.kind)

    def _run_cli(self, argv: list[str], command: str, run: str | None = None) -> ActionResult:
        raise ReadOnlyRefused(argv[0])

    def archive(self, name: str) -> ActionResult:
        raise ReadOnlyRefused("archive")

    def unarchive(self, name: str) -> ActionResult:
        raise ReadOnlyRefused("unarchive")

    def switch_mode(self, name: str, mode: str) -> ActionResult:
        raise ReadOnlyRefused("mode switch")

    def revalidate(self, name: str) -> ActionResult:
        raise ReadOnlyRefused("revalidate")

    def export(self, name: str) -> ActionResult:
        raise ReadOnlyRefused("export")

    def save_diagnostics(self, name: str, markdown: str) -> Path:
        raise ReadOnlyRefused("saving DIAGNOSTIC.md")


def environment_note() -> str | None:
    """A warning when no provider's API key is set (the emulator needs none). Which variables
    hold keys is the provider catalog's word (``ProviderSpec.key_variables``, asked through
    ``engine.providers_setup.configured_providers``), not a list kept here."""
    from octopipe.engine.providers_setup import configured_providers

    if configured_providers():
        return None
    return "no provider API key is set: only --provider fake (the local emulator) can run"
