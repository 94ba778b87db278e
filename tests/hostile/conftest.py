"""Fixtures for the hostile-pipeline suite: see ``harness.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.hostile import CanaryServer, Sandbox


@pytest.fixture
def canary_server() -> Iterator[CanaryServer]:
    server = CanaryServer()
    yield server
    server.close()


@pytest.fixture
def sandbox(tmp_path: Path, canary_server: CanaryServer) -> Sandbox:
    return Sandbox(tmp_path, canary_server)
