"""The `init` and `run` commands: create a run, start or resume it, drive it or detach."""

from __future__ import annotations

import math
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

import click

from octopipe.cli.options import (
    UNIT_COUNT,
    count,
    positive_amount,
    runs_dir_option,
    runs_dir_or_default,
)
from octopipe.cli.output import console, print_json
from octopipe.cli.progress_view import ProgressView
from octopipe.cli.run_consent import (
    check_answer_flags,
    load_hook,
    print_carried_code,
    print_scripts,
    settle_answers,
    settle_scripts,
)
from octopipe.cli.run_settings import (
    Settings,
    check_flex,
    check_resume,
    parse_timeout,
    settle_settings,
)
from octopipe.cli.status_cmds import _print_status, print_post_report
from octopipe.core.checker import check_pipeline
from octopipe.core.config import CONFIG_NAMES, load_pipeline
from octopipe.core.config_models import MAX_POLL_INTERVAL_S
from octopipe.core.costs import Mode
from octopipe.core.pipeline_code import folder_code
from octopipe.core.states import RunStatus
from octopipe.engine.batch import BatchOptions
from octopipe.engine.control import update_settings
from octopipe.engine.create import CreatedRun, RunOptions, create_run
from octopipe.engine.estimate import estimate_pipeline
from octopipe.engine.fingerprint import verify_snapshot
from octopipe.engine.paths import RunPaths, resolve_run
from octopipe.engine.postprocess import NO_SCRIPTS, ScriptPermission, check_permission
from octopipe.engine.preflight import check_base_url, check_provider_settings
from octopipe.engine.providers_setup import (
    check_provider,
    llm_executor,
    split_fake,
)
from octopipe.engine.queries import run_info, run_status, runner_live
from octopipe.engine.realtime import RealtimeOptions
from octopipe.engine.runner import Runner, RunOutcome
from octopipe.engine.starting import mark_starting, started_at
from octopipe.errors import EXIT_FAILURE, EXIT_OK, ConfigError, RunLocked, UsageError
from octopipe.providers.catalog import FAKE, catalog, resolve_api_key

if TYPE_CHECKING:
    from octopipe.emulator.answers import AnswerFn

MAX_CONCURRENCY = 10_000
MAX_RPM = 100_000_000
MAX_TPM = 100_000_000_000
MAX_ATTEMPTS = 1_000


def _runs_dir(value: Path | None) -> Path:
    return runs_dir_or_default(value)


def _init_options(f):
    for option in reversed(
        [
            click.option(
                "--run", "run_name", help="Name of the run (default: pipeline_DATE_TIME)."
            ),
            runs_dir_option,
            click.option("--provider", help="Provider for every LLM step (overrides the config)."),
            click.option("--model", help="Model for every LLM step (overrides the config)."),
            click.option("--max-units", type=UNIT_COUNT, help="Only the first N units."),
            click.option("--repeat", type=UNIT_COUNT, help="Override processing.repeat."),
        ]
    ):
        f = option(f)
    return f


def _poll_interval(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """``--poll-interval``, refused before any run exists unless it would really poll (an
    infinite, NaN, zero or negative interval never would; past a day, results sit uncollected)."""
    if value is not None and not (math.isfinite(value) and 0 < value <= MAX_POLL_INTERVAL_S):
        raise click.BadParameter(
            f"must be a number of seconds between 0 (excluded) and {MAX_POLL_INTERVAL_S:.0f} "
            f"(a day), not {value:g}"
        )
    return value


def _options(
    run_name: str | None,
    provider: str | None,
    model: str | None,
    max_units: int | None,
    repeat: int | None,
    mode: str,
) -> RunOptions:
    return RunOptions(
        name=run_name, provider=provider, model=model, max_units=max_units, repeat=repeat, mode=mode
    )


def _print_created(created: CreatedRun) -> None:
    console.print(f"created run [bold]{created.paths.name}[/bold] in {created.paths.root}")
    console.print(f"  {created.units:,} units")
    for step in created.report.steps:
        if step.kind == "llm":
            calls = "?" if step.calls is None else f"{step.calls:,}"
            console.print(f"  {step.name}: {calls} LLM calls (first attempts)")


@click.command()
@click.argument("pipeline", type=click.Path(exists=True, path_type=Path))
@_init_options
@click.option(
    "--mode",
    type=click.Choice(["batch", "realtime"]),
    default="batch",
    show_default=True,
    help="How LLM steps will run.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the created run as JSON.")
def init(
    pipeline: Path,
    run_name: str | None,
    runs_dir: Path | None,
    provider: str | None,
    model: str | None,
    max_units: int | None,
    repeat: int | None,
    mode: str,
    as_json: bool,
) -> int:
    """Create a run: snapshot the pipeline, generate its units into a new ledger."""
    check_provider(provider)
    created = create_run(
        pipeline, _runs_dir(runs_dir), _options(run_name, provider, model, max_units, repeat, mode)
    )
    if as_json:
        print_json(
            {
                "run": created.paths.name,
                "path": str(created.paths.root),
                "units": created.units,
                "steps": [vars(s) for s in created.report.steps],
            }
        )
    else:
        _print_created(created)
    return EXIT_OK


@click.command()
@click.argument("target")
@_init_options
@click.option("--realtime", "mode", flag_value="realtime", help="LLM steps in realtime.")
@click.option("--batch", "mode", flag_value="batch", help="LLM steps through batch APIs.")
@click.option("--concurrency", type=count(MAX_CONCURRENCY), help="Realtime calls in flight.")
@click.option("--rpm", type=count(MAX_RPM), help="Requests per minute limit.")
@click.option("--tpm", type=count(MAX_TPM), help="Tokens per minute limit.")
@click.option(
    "--max-cost",
    type=positive_amount(),
    help="Pause the run when its cost reaches this many USD (refused if a model is unpriced).",
)
@click.option("--timeout", "timeout", help="Pause the run after this long (90s, 30m, 2h, 1h30m).")
@click.option(
    "--max-attempts",
    type=count(MAX_ATTEMPTS),
    help="LLM attempts per unit and step (default: validation_retry.max_attempts).",
)
@click.option(
    "--poll-interval",
    type=float,
    callback=_poll_interval,
    help="Seconds between batch polls, more than 0 and at most 86400 (default: "
    "api.poll_interval_seconds; 1 with fake).",
)
@click.option(
    "--base-url",
    help="Address of the OpenAI-compatible server (over api.base_url; kept with the run, so "
    "a moved server is pointed at on resume).",
)
@click.option(
    "--detach", is_flag=True, help="Run in the background and return at once (see `watch`)."
)
@click.option(
    "--answers",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --provider fake: a Python file whose answer(request) function gives the "
    "emulator's answers. Its code runs in this process; nothing else is ever run.",
)
@click.option(
    "--generic-answers",
    is_flag=True,
    help="With --provider fake: resume a run started with --answers on the emulator's "
    "schema-shaped answers instead, running none of that file.",
)
@click.option(
    "--allow-scripts",
    is_flag=True,
    help="Run the pipeline folder's own post-process and run-scope scripts when the run "
    "completes (they run as you, with secrets scrubbed from their environment). Without it "
    "they are skipped and listed with the command that would run them.",
)
@click.option(
    "--allow-script",
    "allow_script",
    multiple=True,
    metavar="NAME",
    help="Allow one folder script: its post_process name, its path or its step name (repeatable).",
)
@click.option(
    "--skip-scripts",
    is_flag=True,
    help="Resume a run started with --allow-scripts/--allow-script without running them.",
)
@click.option(
    "--flex",
    "flex",
    flag_value=True,
    default=None,
    help="Realtime calls at OpenAI's flex tier (service_tier flex): flex prices, slower "
    "answers (900 s timeout), sometimes 'resource unavailable'; refused for a model with no "
    "flex price. Kept with the run (config: api.realtime.service_tier: flex).",
)
@click.option(
    "--flex-fallback",
    type=click.Choice(["standard", "batch", "none"]),
    help="When flex stays unavailable after the in-call retries: 'standard' sends that call "
    "at the standard tier (and price); 'batch' sends that unit and the rest of its step "
    "through the batch API (batch price); 'none' (the default) keeps the unit, uncharged, "
    "and tries flex again later.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--quiet", "-q", is_flag=True, help="Do not echo the run log.")
@click.option(
    "--accept-edited-snapshot",
    "accept_snapshot",
    is_flag=True,
    help="Resume a run whose snapshot (RUN/config/) was edited after init, on purpose: the "
    "new files are fingerprinted and logged. Its steps must still be the ledger's.",
)
def run(**options: Any) -> int:
    """Drive a run to completion in the foreground.

    TARGET is a pipeline folder (a new run is created first) or an existing run (name or
    folder), which resumes where its ledger says. Ctrl+C pauses the run; `run` again resumes.
    `--provider fake` runs against the built-in emulator: no API key, no cost.

    `--batch` sends LLM steps through the providers' batch APIs (about half price; results
    within 24 h); `--realtime` (the default for a new run) calls them directly. On an existing
    run either flag switches its mode: batches already submitted are still collected.

    When the run completes, its post-processing runs (`octopipe post` runs it again): the
    built-in analysis, gzip and unit extraction always; the folder's own scripts only with
    `--allow-scripts` or `--allow-script NAME`.

    No code from the pipeline folder runs unless you name it: an emulator answer hook runs only
    when named with `--answers FILE`, folder scripts only with `--allow-scripts`, and a run
    started with either asks for it again on every resume (or `--generic-answers`,
    `--skip-scripts`).
    """
    request = _checked(RunRequest(**options))
    base = _runs_dir(request.runs_dir)
    hook: AnswerFn | None = None
    if _is_pipeline(Path(request.target)):
        request, hook, paths = _start_new(request, base)
    else:
        request, paths = _prepare_resume(request, base)
    stored = run_info(paths)
    allow = settle_scripts(paths, stored, request.allow, request.skip_scripts)
    provider = request.provider or stored.provider
    if hook is None and request.answers is not None:
        check_answer_flags(provider, request.answers, request.generic_answers)
        hook = load_hook(request.answers)
    settle_answers(paths, stored, provider, request.answers, request.generic_answers)
    mode, max_cost = settle_settings(
        paths, stored, request.mode, request.max_cost, request.settings
    )
    request = replace(
        request,
        mode=mode,
        max_cost=max_cost,
        base_url=request.base_url or stored.options.get("base_url"),
    )
    if request.detach:
        return _start_detached(paths, request, allow)
    resolved = replace(request, provider=provider, model=request.model or stored.model)
    return _drive(paths, resolved, allow, hook)


@dataclass(frozen=True)
class RunRequest:
    """What ``octopipe run`` was asked, as the command line gave it (``None``: not given)."""

    target: str
    run_name: str | None
    runs_dir: Path | None
    provider: str | None
    model: str | None
    max_units: int | None
    repeat: int | None
    mode: str | None
    concurrency: int | None
    rpm: int | None
    tpm: int | None
    max_cost: float | None
    timeout: str | None
    max_attempts: int | None
    poll_interval: float | None
    base_url: str | None
    detach: bool
    answers: Path | None
    generic_answers: bool
    yes: bool
    quiet: bool
    accept_snapshot: bool = False
    allow_scripts: bool = False
    allow_script: tuple[str, ...] = ()
    skip_scripts: bool = False
    flex: bool | None = None
    flex_fallback: str | None = None

    @property
    def allow(self) -> ScriptPermission:
        return ScriptPermission(self.allow_scripts, tuple(self.allow_script))

    @property
    def settings(self) -> Settings:
        return Settings(self.provider, self.model, self.base_url, self.max_cost)

    @property
    def timeout_s(self) -> float | None:
        return parse_timeout(self.timeout) if self.timeout is not None else None


def _checked(request: RunRequest) -> RunRequest:
    """Bad input refused before any run exists or changes; paths and addresses normalised."""
    request.timeout_s  # noqa: B018 - parsing is the check
    check_provider(request.provider)
    if request.allow.given and request.skip_scripts:
        raise UsageError("--skip-scripts and --allow-scripts/--allow-script exclude each other")
    return replace(
        request,
        base_url=check_base_url(request.base_url) if request.base_url is not None else None,
        answers=request.answers.resolve() if request.answers is not None else None,
    )


def _start_new(request: RunRequest, base: Path) -> tuple[RunRequest, AnswerFn | None, RunPaths]:
    """A new run from a pipeline folder: checks, the estimate (asked unless ``--yes``), then
    the run created with what the command line chose."""
    target, allow = Path(request.target), request.allow
    check_answer_flags(request.provider, request.answers, request.generic_answers)
    hook = load_hook(request.answers)  # a broken file is refused before the run exists
    check_permission(load_pipeline(target), allow)
    mode = request.mode or "realtime"
    check_flex(mode, request.flex, request.flex_fallback)
    _confirm_estimate(
        target,
        mode,  # type: ignore[arg-type]
        request.settings, request.max_units, request.repeat, request.yes, request.answers,
        allow, flex=request.flex,
    )  # fmt: skip
    init = _options(
        request.run_name, request.provider, request.model, request.max_units, request.repeat, mode
    )
    extra = {
        key: value
        for key, value in (
            ("flex", request.flex),
            ("flex_fallback", request.flex_fallback),
            ("base_url", request.base_url),
            ("scripts", allow.to_option() if allow.given else None),
        )
        if value is not None
    }
    if extra:
        init = replace(init, extra=extra)
    created = create_run(target, base, init)
    _print_created(created)
    return replace(request, mode=mode), hook, created.paths


def _prepare_resume(request: RunRequest, base: Path) -> tuple[RunRequest, RunPaths]:
    """An existing run: its snapshot verified before it is read, the flags checked over what
    it recorded, a changed flex choice recorded."""
    paths = resolve_run(request.target, base)
    if not request.accept_snapshot:
        verify_snapshot(paths)  # before the snapshot is read (provider settings, hooks)
    before = run_info(paths)
    flex = request.flex if request.flex is not None else before.options.get("flex")
    flex_fallback = request.flex_fallback or before.options.get("flex_fallback")
    check_flex(request.mode or before.mode, flex, flex_fallback)
    check_resume(paths, before, request.mode, request.settings, flex=flex)
    check_permission(load_pipeline(paths.config_dir), request.allow)
    changed = {
        key: value
        for key, value in (("flex", flex), ("flex_fallback", flex_fallback))
        if value is not None and before.options.get(key) != value
    }
    if changed:
        update_settings(paths, options=changed)
    return replace(request, flex=flex, flex_fallback=flex_fallback), paths


def _start_detached(paths: RunPaths, request: RunRequest, allow: ScriptPermission) -> int:
    """The same run in a new session with the same options; returns at once."""
    if runner_live(paths):
        raise RunLocked(f"run {paths.name!r} is already being driven by another process")
    flags = {
        "--provider": request.provider,
        "--model": request.model,
        "--concurrency": request.concurrency,
        "--rpm": request.rpm,
        "--tpm": request.tpm,
        "--max-cost": request.max_cost,
        "--timeout": request.timeout,
        "--max-attempts": request.max_attempts,
        "--poll-interval": request.poll_interval,
        "--base-url": request.base_url,
        "--runs-dir": request.runs_dir,
        "--answers": request.answers,
        "--flex-fallback": request.flex_fallback,
    }
    # a --generic-answers or --skip-scripts choice is recorded on the run: no flag needed
    switches = ["--accept-edited-snapshot"] if request.accept_snapshot else []
    switches += ["--flex"] if request.flex else []
    return _detach(paths, flags, switches + allow.flags())


def _drive(
    paths: RunPaths, request: RunRequest, allow: ScriptPermission, hook: AnswerFn | None
) -> int:
    """Drive the run in this process to its end (or a pause) and report how it ended."""
    fake = split_fake(request.provider)[0] == FAKE
    batch = BatchOptions(poll_interval_s=request.poll_interval or (1.0 if fake else None))
    options = RealtimeOptions(
        provider=request.provider,
        model=request.model,
        concurrency=request.concurrency,
        rpm=request.rpm,
        tpm=request.tpm,
        max_cost_usd=request.max_cost,
        timeout_s=request.timeout_s,
        max_attempts=request.max_attempts,
        base_url=request.base_url,
        flex=request.flex,
        flex_fallback=request.flex_fallback,
    )
    live = sys.stderr.isatty() and not request.quiet
    with (
        llm_executor(request.mode, options, answers=hook, batch=batch) as factory,  # type: ignore[arg-type]
        ProgressView(sys.stderr, live) as progress_view,
    ):
        # On a terminal the live table replaces the log, except for what needs attention.
        alerts = cast(TextIO, progress_view.alerts())  # write() and flush() are all it needs
        echo = None if request.quiet else (alerts if live else sys.stderr)
        outcome = Runner(
            paths,
            echo=echo,
            executor=factory,
            progress=None if request.quiet else progress_view,
            accept_snapshot=request.accept_snapshot,
            post=allow,
        ).run()
    return _report_end(paths, outcome, request.answers, allow)


def _report_end(
    paths: RunPaths, outcome: RunOutcome, answers: Path | None, allow: ScriptPermission
) -> int:
    """The run's status, its post-processing, where its outputs are, why it paused (and how
    to resume: with the same ``--answers`` and scripts); the exit code."""
    view = run_status(paths)
    _print_status(view, post=False)
    if outcome.post is not None and outcome.post.actions:
        print_post_report(paths, outcome.post)
    exported = sorted(p.name for p in paths.outputs.glob("*") if not p.name.startswith("."))
    if exported:
        console.print(f"outputs in {paths.outputs}: {', '.join(exported)}", markup=False)
    if view.status == "paused":
        again = (f" --answers {answers}" if answers is not None else "") + "".join(
            f" {shlex.quote(f)}" for f in allow.flags()
        )
        console.print(
            f"paused: {view.reason}; resume with `octopipe run {paths.name}{again}`", markup=False
        )
    if outcome.exit_code:
        return outcome.exit_code
    return EXIT_OK if outcome.status is RunStatus.COMPLETE else EXIT_FAILURE


def _detach(paths: RunPaths, flags: Mapping[str, object], switches: list[str]) -> int:
    """Start ``octopipe run RUN ...`` (same options) in a new session, its output in the run
    folder, and return at once."""
    args = [paths.name, "--yes", "--quiet", *switches]
    for flag, value in flags.items():
        if value is not None:
            args += [flag, str(value)]
    out = (paths.root / "runner.out").open("ab")
    since = started_at()
    process = subprocess.Popen(
        [sys.executable, "-m", "octopipe", "run", *args],
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=out,
        start_new_session=True,
        cwd=Path.cwd(),
    )
    out.close()
    mark_starting(paths.root, process.pid, since)  # changes sent meanwhile are queued for it
    console.print(
        f"run {paths.name} continues in the background (pid {process.pid}); follow it with "
        f"`octopipe watch {paths.name}`, stop it with `octopipe pause {paths.name}`; its "
        f"output goes to {paths.root / 'runner.out'}",
        markup=False,
    )
    return EXIT_OK


def _confirm_estimate(
    folder: Path,
    mode: Mode,
    given: Settings,
    max_units: int | None,
    repeat: int | None,
    yes: bool,
    answers: Path | None,
    allow: ScriptPermission = NO_SCRIPTS,
    *,
    flex: bool | None = None,
) -> None:
    """Check the settings, print units, calls, tokens and cost before anything is created or
    spent; ask unless --yes."""
    provider, model = given.provider, given.model
    pipeline = load_pipeline(folder)
    report = check_pipeline(pipeline, max_units=max_units, repeat=repeat)
    if not report.ok:
        raise ConfigError(report.errors)
    name, vendor = split_fake(provider)
    estimate = estimate_pipeline(pipeline, report, mode, provider=name, model=model, flex=flex)
    for line in estimate.lines():
        console.print(line, markup=False)
    print_carried_code(folder, folder_code(folder, pipeline), answers, fake=name == FAKE)
    print_scripts(pipeline, allow)
    for load in estimate.estimate.per_step:
        if mode == "batch" and not catalog().has_batch(load.provider):
            raise UsageError(
                f"step {load.step!r}: provider {load.provider!r} has no batch API; run it "
                f"with --realtime, or use {catalog().batch_names()}"
            )
    check_provider_settings(
        pipeline,
        mode=mode,
        provider=provider,
        model=model,
        base_url=given.base_url,
        max_cost_usd=given.max_cost,
        flex=flex,
    )
    if not estimate.estimate.per_step:
        return
    for provider_name in {line.provider for line in estimate.estimate.per_step} - {FAKE}:
        resolve_api_key(provider_name)  # fail before creating the run, not after
    if name == FAKE:
        console.print(
            f"provider fake: the local emulator answers ({vendor} wire format); nothing is "
            "charged, the figures show what the model would cost"
        )
        return
    if not yes and not click.confirm("start the run?", default=True):
        raise click.exceptions.Abort()


def _is_pipeline(path: Path) -> bool:
    return path.is_dir() and any((path / n).is_file() for n in CONFIG_NAMES)


__all__ = ["init", "run", "runs_dir_option"]
