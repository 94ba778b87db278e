"""Running the ``octopipe`` command line in tests: in this process the way ``main`` runs it
(``invoke``), or as a real subprocess with no key and no network (``octopipe``); and a
fast copy of random_walk to run (``walk_copy``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from octopipe.cli import cli
from octopipe.cli.output import run_guarded
from support.realtime import EXAMPLES, octopipe_command, offline_env


def invoke(*args: object, input: str | None = None) -> tuple[int, str, str]:
    """Run the CLI as ``main`` does; returns (exit code, stdout, stderr)."""
    runner = CliRunner()
    with runner.isolation(input=input) as streams:
        code = run_guarded(cli, [str(a) for a in args])
        sys.stdout.flush()
        sys.stderr.flush()
        out, err = streams[0].getvalue().decode(), streams[1].getvalue().decode()
    return code, out, err


def octopipe(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 90):
    return subprocess.run(
        [*octopipe_command(), *args],
        cwd=cwd,
        env=env or offline_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def walk_copy(tmp: Path, **keys: Any) -> Path:
    """random_walk with 1 repeat, fast in-call retries and ``keys`` set (``api__base_url``)."""
    target = tmp / "random_walk"
    shutil.copytree(EXAMPLES / "random_walk", target)
    (target / "emulator_answers.py").unlink()  # deterministic default answers
    config = yaml.safe_load((target / "config.yaml").read_text())
    config["processing"]["repeat"] = 1
    config["api"]["retry"] = {"max_attempts": 2, "initial_delay_seconds": 0.05}
    for key, value in keys.items():
        node = config
        *parents, last = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    (target / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def runs_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
