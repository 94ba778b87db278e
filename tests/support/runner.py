"""Builders for runner tests: small pipelines written into tmp folders, and runs of them."""

from __future__ import annotations

from pathlib import Path

from octopipe.engine.create import RunOptions, create_run
from octopipe.engine.paths import RunPaths


def write_pipeline(folder: Path, steps_yaml: str, items_yaml: str, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items.yaml").write_text(items_yaml)
    (folder / "config.yaml").write_text(
        "pipeline:\n  steps:\n"
        + steps_yaml
        + "processing:\n  strategy: direct\n  items: {source: items.yaml, key: items}\n"
        + extra
    )
    return folder


def make_run(pipeline: Path, runs: Path, name: str = "r1", **options: object) -> RunPaths:
    return create_run(pipeline, runs, RunOptions(name=name, **options)).paths  # type: ignore[arg-type]
