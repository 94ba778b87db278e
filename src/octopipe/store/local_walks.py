"""Recording the clean passes of a local chain in one write per unit and step.

The runner computes a chunk of units through consecutive expression steps in memory
(``engine/local_chunks.py``: ``run_local_chunk``). A unit that passed every one of those steps with
nothing to keep but its outputs (no warning, no loop limit reached, so no attempt row) is a
*clean walk*. Its rows are written straight in their final form: the row at the first step goes
from ``pending`` to ``valid`` with its output, one ``valid`` row with its output is inserted at
each later step, and a ``pending`` row at the step after the chain when there is one.

Guarantees:

- The end state equals the step-by-step path's (claim, record a success entering the next step
  claimed, record again ...): the same states, attempt counts, outputs and claim owner; only
  the number of statements differs (tests/store/test_local_walks.py compares both).
- All or nothing: one transaction for the whole call. A unit no longer pending at the first
  step (another writer) or already holding a row at a later step raises ``StoreError`` and
  nothing is written.
- Only expression-like steps are covered: a fan-out step among them raises ``ValueError``
  before anything is written (its children have their own path, ``add_children``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from octopipe.core.states import UnitStepState
from octopipe.errors import StoreError
from octopipe.store.base import LedgerCore, guarded
from octopipe.store.records import CleanWalk

_PENDING = UnitStepState.PENDING.value
_VALID = UnitStepState.VALID.value


class LocalWalks(LedgerCore):
    """:meth:`record_clean_walks`."""

    @guarded
    def record_clean_walks(self, step_idx: int, walks: Sequence[CleanWalk]) -> int:
        """Record each walk's steps as valid with their outputs, from ``step_idx`` (where each
        unit must still be pending) on, and enter each unit pending at the step after its walk
        (if the run has one). Returns the number of units recorded."""
        if not walks:
            return 0
        depth = max(len(w.outputs) for w in walks)
        if min(len(w.outputs) for w in walks) < 1:
            raise ValueError("a clean walk passes at least one step")
        for k in range(step_idx, step_idx + depth):
            self._step(k, must_not_be="fan_out")
        with self.transaction():
            now, owner, db = self._now(), self._owner, self._db
            moved = db.executemany(
                """UPDATE unit_steps SET state = ?, attempts = attempts + 1, output_json = ?,
                       last_stage = NULL, last_error = NULL, updated_at = ?, claimed_by = ?
                   WHERE step_idx = ? AND uid = ? AND state = ?""",
                [(_VALID, w.outputs[0], now, owner, step_idx, w.uid, _PENDING) for w in walks],
            ).rowcount
            if moved != len(walks):
                raise StoreError(
                    f"{len(walks) - moved} of {len(walks)} units were no longer pending at step "
                    f"{step_idx} when recorded; is another process writing this run?"
                )
            # in key order (step, then uid): the cheapest way into the b-trees
            rows: list[tuple[int, int, str, int, str | None, str, int | None]] = []
            for k in range(1, depth + 1):
                for w in walks:
                    if len(w.outputs) > k:
                        rows.append((w.uid, step_idx + k, _VALID, 1, w.outputs[k], now, owner))
                    elif len(w.outputs) == k and step_idx + k < len(self._steps):
                        rows.append((w.uid, step_idx + k, _PENDING, 0, None, now, None))
            try:
                db.executemany(
                    """INSERT INTO unit_steps(uid, step_idx, state, attempts, output_json,
                           updated_at, claimed_by) VALUES (?, ?, ?, ?, ?, ?, ?)""",
                    rows,
                )
            except sqlite3.IntegrityError:
                raise StoreError(
                    f"a unit walked from step {step_idx} already has a row at a later step"
                ) from None
            self._results_changed()
        return len(walks)
