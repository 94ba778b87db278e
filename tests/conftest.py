"""Shared builders for tests: copies of the example pipelines to break on purpose."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DEMOS = ROOT.parent / "shared" / "octobatch-demos"
"""Octobatch's three demos, used by path (CI's checkout has ``../shared`` beside it)."""
DEMO_NAMES = ("Blackjack", "DrunkenSailor", "NPCDialog")


def demo(name: str) -> Path:
    """A demo folder by path. Without ``../shared/octobatch-demos`` the test is skipped on a
    developer's machine and fails loudly in CI (``CI=true``): CI must never skip them."""
    folder = DEMOS / name
    if not (folder / "config.yaml").is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI needs Octobatch's demos at {DEMOS} (../shared beside the checkout)")
        pytest.skip(f"Octobatch's demos are not at {DEMOS}")
    return folder


EXAMPLE_NAMES = ("random_walk", "card_game", "persona_panel", "dice_league")


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


def line_of(folder: Path, needle: str) -> int:
    """1-based line of the first line of config.yaml containing ``needle``."""
    for number, line in enumerate((folder / "config.yaml").read_text().splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in config")
