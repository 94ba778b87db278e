"""``.env`` is read from the working folder only.

A ``.env`` planted above the working folder (in ``/tmp``, in ``/``) or anywhere up from where
the package is installed must never be loaded; the one in the working folder is. Each ``.env``
here points ``OCTOPIPE_RUNS_DIR`` somewhere of its own, so where ``init`` puts the run shows
which file (if any) was read. The package is run from a copy under the sandbox, so a ``.env``
can be planted in its parent folders without touching the real install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import octopipe
from support.hostile import Sandbox


def _package_copy(sandbox: Sandbox) -> dict[str, str]:
    """Copy the package to ``lib/octopipe``; the environment that makes the CLI run it."""
    lib = sandbox.root / "lib"
    shutil.copytree(
        Path(octopipe.__file__).parent,
        lib / "octopipe",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    env = {"PYTHONPATH": str(lib)}
    imported = subprocess.run(
        [sys.executable, "-c", "import octopipe; print(octopipe.__file__)"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert imported == str(lib / "octopipe" / "__init__.py")  # the copy is what runs
    return env


def _plant(folder: Path, runs: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".env").write_text(f"OCTOPIPE_RUNS_DIR={runs}\n")


PLANTED = {
    "the working folder's parent (also above the package)": ".",
    "the folder holding the package": "lib",
    "the package folder": "lib/octopipe",
    "the package's cli folder (where the loader is called)": "lib/octopipe/cli",
}


@pytest.mark.parametrize("where", list(PLANTED))
def test_a_dotenv_outside_the_working_folder_is_never_read(sandbox: Sandbox, where: str) -> None:
    env = _package_copy(sandbox)
    planted_runs = sandbox.root / "planted_runs"
    _plant(sandbox.root / PLANTED[where], planted_runs)

    result = sandbox.octopipe("init", sandbox.pipeline, "--run", "x", env=env)

    assert result.code == 0, result
    assert not planted_runs.exists(), f"the .env in {where} was read"
    assert (sandbox.runs / "x" / "ledger.db").is_file()
    sandbox.assert_contained(result)


def test_the_working_folders_dotenv_is_read(sandbox: Sandbox) -> None:
    env = _package_copy(sandbox)
    _plant(sandbox.root / "lib", sandbox.root / "planted_runs")  # would win today
    _plant(sandbox.work, sandbox.work / "from_env")

    result = sandbox.octopipe("init", sandbox.pipeline, "--run", "x", env=env)

    assert result.code == 0, result
    assert (sandbox.work / "from_env" / "x" / "ledger.db").is_file(), result
    assert not (sandbox.root / "planted_runs").exists()
    assert not sandbox.runs.exists()
    sandbox.assert_contained(result)


def test_the_environment_wins_over_the_working_folders_dotenv(sandbox: Sandbox) -> None:
    _plant(sandbox.work, sandbox.work / "from_env")

    result = sandbox.octopipe(
        "init", sandbox.pipeline, "--run", "x", env={"OCTOPIPE_RUNS_DIR": str(sandbox.runs)}
    )

    assert result.code == 0, result
    assert (sandbox.runs / "x" / "ledger.db").is_file(), result
    assert not (sandbox.work / "from_env").exists()
