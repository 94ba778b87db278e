"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path

import click

from octopipe.engine.paths import default_runs_dir

runs_dir_option = click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder holding runs (default: $OCTOPIPE_RUNS_DIR or ./runs).",
)


def runs_dir_or_default(value: Path | None) -> Path:
    return value if value is not None else default_runs_dir()
