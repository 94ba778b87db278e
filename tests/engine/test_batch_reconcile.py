"""Reconciling an intent after a crash, on an account shared with other programs.

The runner dies after the provider accepted a batch and before the ledger recorded its id.
Meanwhile hundreds of other batches were created on the same account. On restart the intent
must be matched to its batch -- found by paging back through the vendor's list until batches
older than the intent -- never abandoned with its units sent a second time.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from octopipe.core.states import BatchEvent, RunStatus, UnitStepState
from octopipe.emulator import EmulatorConfig, EmulatorThread
from octopipe.store.ledger import Ledger
from support.batch import batch_rows, drive_batch, foreign_batches
from support.realtime import (
    VENDOR_MODELS,
    VENDORS,
    check_ledger,
    copy_example,
    fast_retries,
    ledger_rows,
    make_run,
    set_keys,
    walk_answer,
)

UNITS = 6
NEWER = 620  # more than a page-count limit would ever look at (the old limit was 500)


def walk(tmp: Path) -> Path:
    def edit(config: dict[str, Any]) -> None:
        fast_retries(config)
        set_keys(config, "processing.repeat", UNITS)
        set_keys(config, "processing.chunk_size", 50)

    return copy_example("random_walk", tmp, edit)


def crash_when_the_submit_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Ledger.advance_batch

    def advance_batch(self: Ledger, local_id: str, event: BatchEvent, **fields: Any) -> Any:
        if event is BatchEvent.SUBMIT_OK:
            raise RuntimeError("simulated crash: the provider has the batch, the ledger not")
        return original(self, local_id, event, **fields)

    monkeypatch.setattr(Ledger, "advance_batch", advance_batch)


@pytest.mark.parametrize("vendor", VENDORS)
def test_an_unrecorded_batch_is_found_behind_hundreds_of_newer_batches(
    tmp_path: Path, vendor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = make_run(walk(tmp_path), tmp_path / "runs", mode="batch")
    provider, model = f"fake:{vendor}", VENDOR_MODELS[vendor]
    config = EmulatorConfig(answer_fn=walk_answer, batch_delay_s=0.3)
    with EmulatorThread(config) as emulator:
        with monkeypatch.context() as patch:
            crash_when_the_submit_is_recorded(patch)
            with pytest.raises(RuntimeError, match="simulated crash"):
                drive_batch(paths, provider, model, emulator=emulator)
        (intent,) = batch_rows(paths)
        assert (intent["state"], intent["provider_batch_id"]) == ("intent", None)
        (ours,) = emulator.emulator.core.batches.jobs
        # same size as ours, so that a match by request count could not tell them apart
        foreign_batches(emulator, vendor, NEWER, size=UNITS)

        result = drive_batch(paths, provider, model, emulator=emulator)
        jobs = emulator.emulator.core.batches.jobs.values()
        sent = Counter(key for job in jobs for key in job.keys if not key.startswith("other"))
        created = emulator.stats()["batches_created"]

    assert result.outcome.status is RunStatus.COMPLETE
    (row,) = batch_rows(paths)
    adopted = row["provider_batch_id"]  # Gemini names it batches/<id>
    assert row["state"] == "collected" and adopted.removeprefix("batches/") == ours
    assert created == {vendor: 1 + NEWER}  # nothing resubmitted
    assert len(sent) == UNITS and set(sent.values()) == {1}  # every unit sent exactly once
    check = check_ledger(paths)
    assert check.counts[1][UnitStepState.VALID] == UNITS
    attempts = ledger_rows(paths, "SELECT COUNT(*) FROM attempts WHERE step_idx = 1")
    assert attempts == [(UNITS,)]
    assert f"batch {intent['local_id']} found at the provider: {adopted}" in paths.log.read_text()
