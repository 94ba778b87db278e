"""Post-processing: what runs once a run is complete, recorded in the ledger, kept current.

The plan (:func:`plan`) is the pipeline's run-scope steps in order, then its ``post_process``
entries in order. Each is one *action*:

- ``analysis``: Octobatch's ``scripts/analyze_results.py`` -> octopipe's built-in analysis
  (``core/analysis.py``) over the last unit step's valid records, read from the ledger; its
  text goes where the script's standard output would (``outputs/<output>``), ``--output F``
  writes ``outputs/F`` as the script would write F;
- ``script``: a folder script, run as Octobatch runs it: ``python SCRIPT RUN_DIR ARGS...``
  (``sys.executable``, no shell), standard output into ``outputs/<output>``;
- ``gzip``: each file of the run folder matched by ``files`` globs (not ``.gz``, not what
  octopipe keeps there, no links) is compressed to ``FILE.gz``, the original removed unless
  ``keep_originals``; a recorded export compressed this way is then refreshed compressed;
- ``run_script``: a run-scope step's folder script: ``python SCRIPT --run-dir RUN_DIR
  --step-name NAME --config RUN_DIR/config/config.yaml ARGS...``;
- ``extract``: the built-in unit extraction (``engine/run_steps.py``).

Folder code (``script``, ``run_script``) runs only when the user allows it by name
(:class:`ScriptPermission`: ``--allow-scripts``, or ``--allow-script NAME`` naming the entry's
``name``, its script path or its config key); otherwise the action is recorded as
``skipped`` with the exact command that would run. Scripts run in the run folder with a
scrubbed environment, a time limit and an output cap (``engine/script_exec.py``); their
standard error goes to ``run.log``. Before folder code or a gzip over ``chunks/`` runs, the
Octobatch-compatible view is rebuilt from the ledger (``engine/octobatch_view.py``).

Every action is recorded in the ledger's ``post_runs`` table (``store/post_runs.py``) with the
results version it was computed from. :func:`run_post` with ``only_stale=True`` re-runs what
the ledger has moved past (or never ran, was interrupted, lost its output, or was skipped and
is now allowed), so a resumed, retried, revalidated or repaired run never shows stale
results silently; :func:`post_view` says, for ``status`` and ``info``, which are current. A
failing action is recorded and reported; it never changes the run's status.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from octopipe.core.analysis import AnalysisSpec, analyze, captured, parse_analysis_args, render
from octopipe.core.config import Pipeline
from octopipe.core.config_models import PostProcessSpec, RunStep
from octopipe.core.containment import Escape, real_root, resolve_inside
from octopipe.core.scripts import (
    ANALYSIS_SCRIPT,
    escapes,
    glob_problem,
    normalised,
    output_problem,
    resolve_script,
)
from octopipe.core.states import RunStatus, UnitStepState
from octopipe.engine.exports import note_compressed, refresh_exports, valid_records
from octopipe.engine.fingerprint import open_snapshot
from octopipe.engine.octobatch_view import VIEW_DIR, write_view
from octopipe.engine.paths import RunPaths
from octopipe.engine.post_view import PostState, post_view
from octopipe.engine.run_steps import extract_units
from octopipe.engine.runlog import RunLog
from octopipe.engine.script_exec import ScriptOutcome, run_script
from octopipe.errors import OctopipeError, PostProcessError, RunLocked, UsageError
from octopipe.store import RunReader, RunStore, open_run_store
from octopipe.store.lock import RunLock
from octopipe.store.records import PostKind, PostOutcome, PostRunRow

FOLDER_CODE: tuple[PostKind, ...] = ("script", "run_script")
STDERR_LINES_LOGGED = 200
GZIP_LEVEL = 6


# --- who may run what --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptPermission:
    """Which folder scripts the user allowed on this command: all (``--allow-scripts``) or
    the ones named (``--allow-script NAME``, repeatable)."""

    everything: bool = False
    names: tuple[str, ...] = ()

    @property
    def given(self) -> bool:
        return self.everything or bool(self.names)

    def allows(self, action: Action) -> bool:
        return self.everything or bool(set(self.names) & action.names)

    def unknown(self, actions: Sequence[Action]) -> list[str]:
        """Names given that match no folder script of the plan (a typo)."""
        known: set[str] = set()
        for action in actions:
            if action.kind in FOLDER_CODE:
                known |= action.names
        return [n for n in self.names if n not in known]

    def to_option(self) -> str | list[str] | None:
        """How a run records it (``options.scripts``)."""
        return "all" if self.everything else (list(self.names) or None)

    @classmethod
    def from_option(cls, value: object) -> ScriptPermission:
        if value == "all":
            return cls(everything=True)
        if isinstance(value, list):
            return cls(names=tuple(str(v) for v in value))
        return cls()

    def flags(self) -> list[str]:
        """The command-line flags that give this permission again."""
        if self.everything:
            return ["--allow-scripts"]
        return [arg for name in self.names for arg in ("--allow-script", name)]


NO_SCRIPTS = ScriptPermission()


# --- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    position: int
    key: str  # the config key: post_process[3], pipeline.steps[5]
    name: str
    kind: PostKind
    spec: PostProcessSpec | RunStep
    written: str | None = None  # the script as the config gives it
    script: Path | None = None  # a folder script, inside the run's snapshot
    script_relative: str | None = None
    args: tuple[str, ...] = ()
    output: str | None = None  # relative to the run folder
    timeout_s: float = 600.0

    @property
    def names(self) -> set[str]:
        """What ``--allow-script NAME`` may call this action by."""
        found = {self.name, self.key}
        found |= {n for n in (self.written, self.script_relative) if n}
        if self.script_relative:
            found.add(Path(self.script_relative).name)
        return found

    def argv(self, paths: RunPaths) -> list[str]:
        """The command a folder script runs as (Octobatch's calling conventions)."""
        assert self.script is not None
        root = str(paths.root.resolve())
        if self.kind == "run_script":
            config = str(paths.config_dir.resolve() / "config.yaml")
            head = [sys.executable, str(self.script), "--run-dir", root]
            return [*head, "--step-name", self.name, "--config", config, *self.args]
        return [sys.executable, str(self.script), root, *self.args]

    def command(self, paths: RunPaths) -> list[str]:
        """What runs, as recorded: the argv of a script, a description of a built-in."""
        if self.kind in FOLDER_CODE:
            return self.argv(paths)
        if self.kind == "analysis":
            return ["octopipe built-in analysis", *self.args]
        if self.kind == "gzip":
            assert isinstance(self.spec, PostProcessSpec)
            return ["gzip", *self.spec.files]
        return ["octopipe built-in extraction", self.output or ""]


def plan(pipeline: Pipeline) -> list[Action]:
    """The run-scope steps, then the ``post_process`` entries, of a (snapshot) pipeline."""
    api_timeout = pipeline.config.api.subprocess_timeout_seconds
    actions: list[Action] = []
    for i, step in enumerate(pipeline.steps):
        if isinstance(step, RunStep):
            actions.append(_run_step_action(pipeline, len(actions), i, step, api_timeout))
    for i, post in enumerate(pipeline.config.post_process):
        actions.append(_post_action(pipeline, len(actions), i, post, api_timeout))
    return actions


def _run_step_action(
    pipeline: Pipeline, position: int, index: int, step: RunStep, api_timeout: float
) -> Action:
    key = f"pipeline.steps[{index}]"
    timeout = step.timeout_seconds or api_timeout
    ref = resolve_script(pipeline.folder, step.script, run_step=True) if step.script else None
    if ref is None or ref.kind == "extract":
        output = normalised(step.output_dir or "outputs/units")
        return Action(position, key, step.name, "extract", step, step.script, output=output)
    return Action(
        position,
        key,
        step.name,
        "run_script",
        step,
        step.script,
        _in_snapshot(pipeline, ref.relative),
        ref.relative,
        tuple(step.args),
        timeout_s=timeout,
    )


def _post_action(
    pipeline: Pipeline, position: int, index: int, post: PostProcessSpec, api_timeout: float
) -> Action:
    key = f"post_process[{index}]"
    output = f"outputs/{normalised(post.output)}" if post.output else None
    timeout = post.timeout_seconds or api_timeout
    if post.type == "gzip":
        name = post.name or f"gzip {' '.join(post.files)}"
        return Action(position, key, name, "gzip", post, output=None, timeout_s=timeout)
    assert post.script is not None
    ref = resolve_script(pipeline.folder, post.script)
    name = post.name or post.script
    if ref.kind == "analysis":
        return Action(
            position, key, name, "analysis", post, post.script, args=tuple(post.args), output=output
        )
    return Action(
        position,
        key,
        name,
        "script",
        post,
        post.script,
        _in_snapshot(pipeline, ref.relative),
        ref.relative,
        tuple(post.args),
        output,
        timeout,
    )


def _in_snapshot(pipeline: Pipeline, relative: str | None) -> Path:
    if relative is None:
        raise PostProcessError("a script outside the pipeline folder cannot run")
    return Path(os.path.normpath(pipeline.folder / relative))


# --- running -----------------------------------------------------------------------------------


@dataclass
class ActionReport:
    action: Action
    outcome: str  # ok, failed, skipped, interrupted
    exit_code: int | None
    detail: str | None
    command: list[str]
    output: str | None


@dataclass
class PostReport:
    actions: list[ActionReport] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for a in self.actions if a.outcome == outcome)

    @property
    def failed(self) -> list[ActionReport]:
        return [a for a in self.actions if a.outcome == "failed"]


def run_post(
    ledger: RunStore,
    paths: RunPaths,
    pipeline: Pipeline,
    log: RunLog,
    *,
    allow: ScriptPermission = NO_SCRIPTS,
    only_stale: bool = False,
    cancelled: Callable[[], bool] = lambda: False,
) -> PostReport:
    """Run the plan (or, with ``only_stale``, what is not current) and record each action."""
    version = ledger.results_version()
    actions = plan(pipeline)
    if only_stale:
        latest = {row.action: row for row in ledger.post_runs()}
        actions = [a for a in actions if _needs_run(a, latest.get(a.key), version, allow, paths)]
    report = PostReport()
    if not actions:
        return report
    if any(_needs_view(a, allow) for a in actions):
        summary = write_view(ledger, paths, pipeline.config.processing.chunk_size)
        log.write(
            "POST",
            f"Octobatch view rebuilt in {VIEW_DIR}/: {summary.chunks} chunk(s), "
            f"{summary.valid_lines} validated and {summary.failure_lines} failure line(s)",
        )
    runner = _Runner(ledger, paths, log, version, cancelled)
    for action in actions:
        if cancelled():
            log.write("POST", "post-processing interrupted; `octopipe post` runs the rest")
            break
        if action.kind in FOLDER_CODE and not allow.allows(action):
            report.actions.append(runner.skip(action))
        else:
            report.actions.append(runner.run(action))
    return report


def _needs_run(
    action: Action,
    row: PostRunRow | None,
    version: int,
    allow: ScriptPermission,
    paths: RunPaths,
) -> bool:
    if row is None or row.outcome == "running" or row.results_version != version:
        return True
    if row.outcome == "skipped":
        return allow.allows(action)
    return row.outcome == "ok" and row.output is not None and not (paths.root / row.output).exists()


def _needs_view(action: Action, allow: ScriptPermission) -> bool:
    if action.kind in FOLDER_CODE:
        return allow.allows(action)
    if action.kind == "gzip":
        assert isinstance(action.spec, PostProcessSpec)
        return any(normalised(p).split("/")[0] in (VIEW_DIR, "*") for p in action.spec.files)
    return False


class _Interrupted(Exception):
    """The run is stopping (Ctrl+C, pause): the action was cut short, not failed."""


class _Runner:
    def __init__(
        self,
        ledger: RunStore,
        paths: RunPaths,
        log: RunLog,
        version: int,
        cancelled: Callable[[], bool],
    ) -> None:
        self.ledger, self.paths, self.log = ledger, paths, log
        self.version, self.cancelled = version, cancelled

    def skip(self, action: Action) -> ActionReport:
        command = action.command(self.paths)
        flag = f"--allow-script {shlex.quote(action.name)}"
        detail = (
            f"folder code, not allowed: `octopipe post {self.paths.name} {flag}` (or "
            f"--allow-scripts) runs: {shlex.join(command)}"
        )
        self.ledger.start_post_run(
            action.position,
            action.key,
            action.name,
            action.kind,
            command,
            action.output,
            self.version,
            outcome="skipped",
            detail=detail,
        )
        self.log.write("POST", f"{action.name}: skipped ({detail})")
        return ActionReport(action, "skipped", None, detail, command, action.output)

    def run(self, action: Action) -> ActionReport:
        command = action.command(self.paths)
        row = self.ledger.start_post_run(
            action.position,
            action.key,
            action.name,
            action.kind,
            command,
            action.output,
            self.version,
        )
        self.log.write("POST", f"{action.name}: running {shlex.join(command)}")
        try:
            ok, code, detail, output = self.dispatch(action)
        except _Interrupted:
            # The row stays ``running``: with no runner it reads as interrupted, and the next
            # ``run NAME`` or ``post`` runs it again.
            self.log.write("POST", f"{action.name}: interrupted")
            return ActionReport(action, "interrupted", None, "interrupted", command, None)
        except OctopipeError as exc:
            ok, code, detail, output = False, None, exc.message, action.output
        except OSError as exc:
            ok, code, detail, output = False, None, f"{type(exc).__name__}: {exc}", action.output
        outcome: PostOutcome = "ok" if ok else "failed"
        self.ledger.finish_post_run(row, outcome, code, detail)
        where = f" -> {output}" if output else ""
        self.log.write(
            "POST", f"{action.name}: {outcome}{where}" + (f": {detail}" if detail else "")
        )
        self.ledger.log_event(
            "info" if ok else "warning",
            "POST",
            f"{action.name}: {outcome}",
            {"action": action.key, "exit_code": code, "output": output},
        )
        return ActionReport(action, outcome, code, detail, command, output)

    def dispatch(self, action: Action) -> tuple[bool, int | None, str | None, str | None]:
        if action.kind == "analysis":
            return self.analysis(action)
        if action.kind == "gzip":
            return self.gzip(action)
        if action.kind == "extract":
            assert isinstance(action.spec, RunStep)
            summary = extract_units(self.ledger, self.paths, action.spec)
            return not summary.errors, 1 if summary.errors else 0, summary.describe(), action.output
        return self.script(action)

    # --- the built-in analysis -----------------------------------------------------------

    def analysis(self, action: Action) -> tuple[bool, int | None, str | None, str | None]:
        spec = parse_analysis_args(action.args)
        last = len(self.ledger.steps) - 1
        text: str | None = None
        detail: str | None = None
        try:
            result = analyze(valid_records(self.ledger, last), spec)
        except OctopipeError as exc:
            detail = exc.message
        else:
            text = render(result)
            for note in [*result.notes, *self._csv_errors(spec, result.errors)]:
                self.log.write("POST", f"{action.name}: {note}")
        written = self._analysis_files(action, spec, text)
        if text is None:
            return False, 1, detail, written
        return True, 0, None, written

    @staticmethod
    def _csv_errors(spec: AnalysisSpec, errors: Sequence[str]) -> list[str]:
        return [f"Warning: {e}" for e in errors] if spec.output_format == "csv" else []

    def _analysis_files(self, action: Action, spec: AnalysisSpec, text: str | None) -> str | None:
        """As Octobatch: ``--output F`` gets the text; otherwise it is what the script prints,
        which ``output:`` captures (nothing printed when the analysis found nothing)."""
        printed = "" if text is None or spec.output else captured(text)
        written = None
        if spec.output is not None and text is not None:
            if escapes(spec.output):
                raise PostProcessError(f"--output {spec.output!r} leaves the run's outputs folder")
            target = f"outputs/{normalised(spec.output)}"
            self._write(target, text)
            written = target
        if action.output is not None:
            self._write(action.output, printed)
            written = written or action.output
        elif printed:
            for line in printed.splitlines():
                self.log.write("POST", f"{action.name}| {line}")
        return written

    def _write(self, relative: str, text: str) -> None:
        target = self._contained(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
                out.write(text)
            os.chmod(temp, 0o644)
            os.replace(temp, target)
        finally:
            Path(temp).unlink(missing_ok=True)

    def _contained(self, relative: str) -> Path:
        """A path inside the run folder; a link on the way out is refused."""
        root = real_root(self.paths.root)
        target = root / normalised(relative)
        if target.is_symlink():
            target.unlink()  # a link planted where an output goes is replaced, never followed
        try:
            resolve_inside(root, target.parent, relative)
        except Escape as exc:
            raise PostProcessError(f"{relative}: {exc.reason}") from None
        return target

    # --- folder scripts --------------------------------------------------------------------

    def script(self, action: Action) -> tuple[bool, int | None, str | None, str | None]:
        assert action.script is not None
        snapshot = real_root(self.paths.config_dir)
        try:
            real = resolve_inside(snapshot, action.script, action.script_relative)
        except Escape as exc:
            raise PostProcessError(f"script {action.written!r}: {exc.reason}") from None
        if not real.is_file():
            raise PostProcessError(
                f"script {action.written!r} is not in the run's snapshot ({action.script})"
            )
        stdout_to = self._contained(action.output) if action.output else None
        outcome = run_script(
            action.argv(self.paths),
            cwd=self.paths.root,
            timeout_s=action.timeout_s,
            stdout_to=stdout_to,
            cancelled=self.cancelled,
        )
        self._log_streams(action, outcome, printed=stdout_to is None)
        if outcome.stopped is not None and self.cancelled():
            raise _Interrupted
        detail = outcome.describe() if not outcome.ok else None
        if outcome.ok and stdout_to is None:
            detail = "its output is in run.log"
        return outcome.ok, outcome.exit_code, detail, action.output

    def _log_streams(self, action: Action, outcome: ScriptOutcome, *, printed: bool) -> None:
        lines = outcome.stderr.splitlines()
        if printed:
            lines = outcome.stdout.decode("utf-8", "replace").splitlines() + lines
        for line in lines[:STDERR_LINES_LOGGED]:
            self.log.write("POST", f"{action.name}| {line}")
        hidden = len(lines) - STDERR_LINES_LOGGED
        if hidden > 0 or outcome.stderr_cut:
            self.log.write(
                "POST",
                f"{action.name}: {max(hidden, 0)} more line(s) and {outcome.stderr_cut} byte(s) "
                "of its output not logged",
            )

    # --- gzip --------------------------------------------------------------------------------

    def gzip(self, action: Action) -> tuple[bool, int | None, str | None, str | None]:
        assert isinstance(action.spec, PostProcessSpec)
        root = real_root(self.paths.root)
        done = skipped = 0
        for pattern in action.spec.files:
            problem = glob_problem(pattern)
            if problem:
                raise PostProcessError(f"gzip pattern {pattern!r} {problem}")
            for path in sorted(root.glob(normalised(pattern))):
                relative = path.relative_to(root).as_posix()
                if not self._compressible(root, path, relative):
                    skipped += 1
                    continue
                _gzip_file(path)
                if not action.spec.keep_originals:
                    path.unlink()
                if relative.startswith("outputs/") and "/" not in relative[len("outputs/") :]:
                    note_compressed(self.paths, path.name, keep_original=action.spec.keep_originals)
                done += 1
        detail = f"compressed {done} file(s)" + (f", left {skipped} alone" if skipped else "")
        return True, 0, detail, None

    @staticmethod
    def _compressible(root: Path, path: Path, relative: str) -> bool:
        if path.name.endswith(".gz") or path.is_symlink() or not path.is_file():
            return False
        first = relative.split("/")[0]
        if first != VIEW_DIR and output_problem(relative) is not None:
            return False  # the ledger, the snapshot, the logs: octopipe's own
        try:
            resolve_inside(root, path)
        except Escape:
            return False
        return True


def _gzip_file(path: Path) -> None:
    """``path`` -> ``path.gz`` atomically; no timestamp or name inside, so the same file gives
    the same bytes (as the exports' own gzip)."""
    target = path.with_name(path.name + ".gz")
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=path.parent)
    try:
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        with os.fdopen(fd, "wb") as out, path.open("rb") as source:
            for chunk in iter(lambda: source.read(1 << 16), b""):
                out.write(compressor.compress(chunk))
            out.write(compressor.flush())
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    finally:
        Path(temp).unlink(missing_ok=True)


# --- entry points for commands -------------------------------------------------------------------


def _has_work(ledger: RunReader) -> bool:
    live = (UnitStepState.PENDING, UnitStepState.IN_FLIGHT)
    return any(by.get(s, 0) for by in ledger.counts().values() for s in live)


def rerun_post(
    paths: RunPaths,
    allow: ScriptPermission,
    *,
    echo: TextIO | None = None,
    only_stale: bool = False,
) -> PostReport:
    """``octopipe post RUN``: run a complete run's post-processing again, under the run's
    lock (refused while a runner drives it), from its fingerprinted snapshot; exports the
    ledger has moved past are refreshed first."""
    lock = RunLock(paths.root)
    if not lock.try_acquire():
        raise RunLocked(
            f"run {paths.name!r} is being driven by a live runner; its post-processing runs "
            "when it completes (`octopipe watch` follows it)"
        )
    try:
        ledger = open_run_store(paths.ledger)
        try:
            info = ledger.run_info()
            if info.status is not RunStatus.COMPLETE or _has_work(ledger):
                raise UsageError(
                    f"run {paths.name!r} is {info.status.value}: post-processing runs on a "
                    f"complete run (`octopipe run {paths.name}` drives it there)"
                )
            pipeline = open_snapshot(ledger, paths)
            unknown = allow.unknown(plan(pipeline))
            if unknown:
                raise UsageError(_unknown_scripts(unknown, plan(pipeline)))
            log = RunLog(paths.log, echo)
            try:
                refreshed = refresh_exports(ledger, paths)
                if refreshed:
                    log.write("EXPORT", ", ".join(f.path.name for f in refreshed))
                return run_post(ledger, paths, pipeline, log, allow=allow, only_stale=only_stale)
            finally:
                log.close()
        finally:
            ledger.close()
    finally:
        lock.release()


def _unknown_scripts(unknown: Sequence[str], actions: Sequence[Action]) -> str:
    scripts = [f"{a.name!r} ({a.script_relative})" for a in actions if a.kind in FOLDER_CODE] or [
        "none"
    ]
    return (
        f"--allow-script {', '.join(map(repr, unknown))}: no folder script of this pipeline is "
        f"called that; its folder scripts: {', '.join(scripts)}"
    )


def check_permission(pipeline: Pipeline, allow: ScriptPermission) -> None:
    """Refuse ``--allow-script`` names that match no folder script of ``pipeline``."""
    actions = plan(pipeline)
    unknown = allow.unknown(actions)
    if unknown:
        raise UsageError(_unknown_scripts(unknown, actions))


def refresh_after_change(ledger: RunStore, paths: RunPaths, log: RunLog) -> PostReport | None:
    """After ``revalidate``, ``retry`` or ``repair`` changed a complete run's results (the
    caller holds the lock): re-run the built-in post-processing the ledger has moved past;
    folder scripts are not run (nobody allowed them on this command), so ``status`` shows
    them stale until ``octopipe post RUN --allow-scripts``. Nothing happens while units are
    still to run: the run's end runs everything."""
    if ledger.run_info().status is not RunStatus.COMPLETE or _has_work(ledger):
        return None
    try:
        pipeline = open_snapshot(ledger, paths)
        return run_post(ledger, paths, pipeline, log, only_stale=True)
    except OctopipeError as exc:
        log.write("POST", f"post-processing not refreshed: {exc.message}")
        return None


__all__ = [
    "ANALYSIS_SCRIPT",
    "NO_SCRIPTS",
    "Action",
    "PostReport",
    "PostState",
    "ScriptPermission",
    "check_permission",
    "plan",
    "post_view",
    "refresh_after_change",
    "rerun_post",
    "run_post",
]
