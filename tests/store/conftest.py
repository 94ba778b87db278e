"""Fixtures for ledger tests. ``make_ledger`` runs each test on a file and in memory."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from octopipe.store.ledger import Ledger
from octopipe.store.records import StepDef
from support.ledger import WALK_CLASSIFY_JUDGE, MakeLedger, run_meta


@pytest.fixture(params=["file", "memory"])
def make_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeLedger]:
    """``make_ledger(steps=...)`` -> a fresh ledger, on disk or in memory."""
    made: list[Ledger] = []

    def make(steps: Sequence[StepDef] = WALK_CLASSIFY_JUDGE, **meta: Any) -> Ledger:
        if request.param == "file":
            ledger = Ledger.create(tmp_path / f"ledger{len(made)}.db", run_meta(**meta), steps)
        else:
            ledger = Ledger.in_memory(run_meta(**meta), steps)
        made.append(ledger)
        return ledger

    yield make
    for ledger in made:
        ledger.close()


@pytest.fixture
def file_ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger.create(tmp_path / "ledger.db", run_meta(), WALK_CLASSIFY_JUDGE)
    yield ledger
    ledger.close()
