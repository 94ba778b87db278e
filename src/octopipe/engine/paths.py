"""Where a run's files live, and how a run name is found under the runs folder.

``runs/<name>/``: ``config/`` (the pipeline snapshot), ``ledger.db`` (the source of truth),
``run.log`` (human log), ``trace.jsonl`` (one line per provider call or batch operation),
``outputs/`` (exports, reproducible from the ledger), ``.exports.json`` (what each export was
written from), ``.lock`` (held by the live runner).
Archived runs live in ``runs/_archive/<name>/``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from octopipe.errors import RunNotFound, UsageError

ARCHIVE_DIR = "_archive"
LEDGER_FILE = "ledger.db"
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def default_runs_dir() -> Path:
    return Path(os.environ.get("OCTOPIPE_RUNS_DIR", "runs"))


def check_run_name(name: str) -> str:
    if not RUN_NAME.match(name) or name == ARCHIVE_DIR or ".." in name:
        raise UsageError(
            f"invalid run name {name!r}: use letters, digits, '_', '-', '.' "
            "(up to 128, not starting with a symbol)"
        )
    return name


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def ledger(self) -> Path:
        return self.root / LEDGER_FILE

    @property
    def log(self) -> Path:
        return self.root / "run.log"

    @property
    def trace(self) -> Path:
        return self.root / "trace.jsonl"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def exports_manifest(self) -> Path:
        """Which exports were written, with what settings, at which results version."""
        return self.root / ".exports.json"

    @property
    def runner_output(self) -> Path:
        """stdout/stderr of a detached runner."""
        return self.root / "runner.out"

    def exists(self) -> bool:
        return self.ledger.is_file()


def resolve_run(run: str | Path, runs_dir: Path | None = None) -> RunPaths:
    """A run by folder path, or by name under the runs folder (archived runs too)."""
    candidate = Path(run)
    if (candidate / LEDGER_FILE).is_file():
        return RunPaths(candidate.resolve())
    base = runs_dir or default_runs_dir()
    for folder in (base / str(run), base / ARCHIVE_DIR / str(run)):
        if (folder / LEDGER_FILE).is_file():
            return RunPaths(folder.resolve())
    raise RunNotFound(str(run), str(base))


def iter_runs(runs_dir: Path, include_archived: bool = False) -> list[tuple[RunPaths, bool]]:
    """(paths, archived) for every run folder, sorted by name."""
    found: list[tuple[RunPaths, bool]] = []
    places = [(runs_dir, False)] + ([(runs_dir / ARCHIVE_DIR, True)] if include_archived else [])
    for base, archived in places:
        if not base.is_dir():
            continue
        for child in sorted(base.iterdir()):
            # dot-folders are runs still being created by `init` (or abandoned by a crash)
            hidden = child.name.startswith(".")
            if not hidden and child.name != ARCHIVE_DIR and (child / LEDGER_FILE).is_file():
                found.append((RunPaths(child.resolve()), archived))
    return found
