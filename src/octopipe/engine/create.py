"""``init``: create a run folder with a snapshot of the pipeline, its ledger and its units.

The run is built in a temporary folder beside its final place and renamed into place at the
end, so a crash or Ctrl+C during init leaves no half-made run. After init the run never reads
the source pipeline folder again: everything comes from ``config/``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from octopipe.core.checker import CheckReport, check_pipeline
from octopipe.core.config import Pipeline, load_pipeline
from octopipe.core.config_models import RunStep
from octopipe.core.containment import Escape, copy_contained
from octopipe.core.scripts import resolve_script
from octopipe.core.units import iter_units
from octopipe.engine.fingerprint import record_fingerprint, step_defs
from octopipe.engine.paths import RunPaths, check_run_name
from octopipe.errors import CannotWrite, ConfigError, UsageError
from octopipe.store import create_run_store
from octopipe.store.records import RunMeta


@dataclass(frozen=True)
class RunOptions:
    """Choices made at init (CLI flags); they override the pipeline's config for this run."""

    name: str | None = None
    provider: str | None = None
    model: str | None = None
    max_units: int | None = None
    repeat: int | None = None
    mode: str = "batch"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "max_units": self.max_units,
            "repeat": self.repeat,
            "mode": self.mode,
            **self.extra,
        }


@dataclass(frozen=True)
class CreatedRun:
    paths: RunPaths
    units: int
    report: CheckReport


def default_run_name(pipeline: Pipeline) -> str:
    return f"{pipeline.name}_{datetime.now(UTC).strftime('%Y%m%d_%H%M%S')}"


def snapshot(pipeline: Pipeline, target: Path) -> None:
    """Copy what the run needs: config, items, templates, schemas, scripts.

    Only real files inside the pipeline folder are copied: a link is followed only to an
    inside target, and one pointing outside is a ``ConfigError`` naming it (the folder was
    checked at load; this holds even if it changed since). Files keep the paths the config
    names them by.
    """
    target.mkdir(parents=True)
    root = pipeline.folder
    shutil.copy2(pipeline.config_file, target / "config.yaml")
    wanted = [pipeline.items_path, pipeline.template_dir, root / pipeline.config.schemas.schema_dir]
    if pipeline.prices_path is not None:
        wanted.append(pipeline.prices_path)
    refs = [resolve_script(root, p.script) for p in pipeline.config.post_process if p.script]
    refs += [
        resolve_script(root, s.script, run_step=True)
        for s in pipeline.steps
        if isinstance(s, RunStep) and s.script
    ]
    # Folder scripts by where they really are (``pipelines/<Name>/x.py`` is the folder's x.py).
    wanted += [root / r.relative for r in refs if r.relative is not None]
    for source in wanted:
        written = Path(os.path.normpath(source))
        if not written.is_relative_to(root) or not os.path.lexists(written):
            continue  # refused at load (``../``), or optional and absent
        try:
            copy_contained(root, written, target / written.relative_to(root))
        except Escape as exc:
            raise ConfigError.single(str(written), exc.reason) from None


def create_run(
    pipeline_dir: Path,
    runs_dir: Path,
    options: RunOptions,
    progress: Callable[[int], None] | None = None,
) -> CreatedRun:
    """Validate, snapshot, generate units into a new ledger; refuse an existing run name."""
    pipeline = load_pipeline(pipeline_dir)
    report = check_pipeline(pipeline, max_units=options.max_units, repeat=options.repeat)
    if not report.ok:
        raise ConfigError(report.errors)
    name = check_run_name(options.name or default_run_name(pipeline))
    final = runs_dir / name
    if final.exists():
        raise UsageError(f"a run named {name!r} already exists in {runs_dir}")
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(runs_dir)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".init", dir=runs_dir))
        staging.chmod(0o755)
    except OSError as exc:  # a read-only or full runs folder: say so, create nothing
        raise CannotWrite(runs_dir, CannotWrite.reason_of(exc), "a new run in") from None
    try:
        paths = RunPaths(staging)
        snapshot(pipeline, paths.config_dir)
        paths.outputs.mkdir()
        snap = load_pipeline(paths.config_dir)  # the run's own copy from now on
        units = _write_ledger(
            snap, paths, name, options, progress, source=pipeline.folder, title=pipeline.name
        )
        try:
            staging.rename(final)
        except OSError as exc:
            raise UsageError(f"a run named {name!r} already exists in {runs_dir}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return CreatedRun(RunPaths(final.resolve()), units, report)


STALE_AFTER_S = 600


def _remove_stale_staging(runs_dir: Path) -> None:
    """Remove staging folders an interrupted init left behind (never a recent one: another
    init may be using it)."""
    now = time.time()
    for folder in runs_dir.glob(".*.init"):
        with contextlib.suppress(OSError):
            if folder.is_dir() and now - folder.stat().st_mtime > STALE_AFTER_S:
                shutil.rmtree(folder, ignore_errors=True)


def _write_ledger(
    pipeline: Pipeline,
    paths: RunPaths,
    name: str,
    options: RunOptions,
    progress: Callable[[int], None] | None,
    source: Path | None = None,
    title: str | None = None,
) -> int:
    meta = RunMeta(
        name=name,
        # The snapshot's folder is always config/: the name comes from the folder the user named.
        pipeline_name=title or pipeline.name,
        mode=options.mode,  # type: ignore[arg-type]
        provider=options.provider,
        model=options.model,
        max_units=options.max_units,
        repeat=options.repeat,
        options=options.to_json(),
    )
    ledger = create_run_store(paths.ledger, meta, step_defs(pipeline))
    try:
        record_fingerprint(ledger, paths)  # the snapshot this ledger is made from
        units = iter_units(
            pipeline.config.processing,
            pipeline.items_path,
            max_units=options.max_units,
            repeat=options.repeat,
        )
        count = ledger.add_units(((u.id, u.fields) for u in units), origin_step=0)
        ledger.log_event(
            "info",
            "INIT",
            f"created run {name} with {count} units",
            {
                "units": count,
                "options": options.to_json(),
                "source": str(source) if source else None,
            },
        )
        if progress is not None:
            progress(count)
        return count
    finally:
        ledger.close()
