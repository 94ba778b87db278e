"""Fixtures shared by every test folder; helpers and paths live in the ``support`` package."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from support.paths import EXAMPLES


@pytest.fixture
def example_copy(tmp_path: Path) -> Callable[..., Path]:
    """``example_copy("random_walk", edit=lambda text: ...)`` -> a private, editable copy."""

    def make(name: str, edit: Callable[[str], str] | None = None) -> Path:
        target = tmp_path / name
        shutil.copytree(EXAMPLES / name, target)
        if edit is not None:
            config = target / "config.yaml"
            original = config.read_text()
            changed = edit(original)
            assert changed != original, "the edit did not change the config"
            config.write_text(changed)
        return target

    return make
