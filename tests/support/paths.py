"""Where the tests' material lives (the repository, its examples, Octobatch's demos) and small
readers of it. Imported as ``from support.paths import EXAMPLES, demo, line_of``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DEMOS = ROOT.parent / "shared" / "octobatch-demos"
"""Octobatch's three demos, used by path (CI's checkout has ``../shared`` beside it)."""
DEMO_NAMES = ("Blackjack", "DrunkenSailor", "NPCDialog")
EXAMPLE_NAMES = ("random_walk", "card_game", "persona_panel", "dice_league")


def demo(name: str) -> Path:
    """A demo folder by path. Without ``../shared/octobatch-demos`` the test is skipped on a
    developer's machine and fails loudly in CI (``CI=true``): CI must never skip them."""
    folder = DEMOS / name
    if not (folder / "config.yaml").is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI needs Octobatch's demos at {DEMOS} (../shared beside the checkout)")
        pytest.skip(f"Octobatch's demos are not at {DEMOS}")
    return folder


def line_of(folder: Path, needle: str) -> int:
    """1-based line of the first line of config.yaml containing ``needle``."""
    for number, line in enumerate((folder / "config.yaml").read_text().splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in config")
