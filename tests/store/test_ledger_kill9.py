"""kill -9 a process writing the ledger, resume, repeat: no unit lost or counted twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from octopipe.core.states import UnitStepState
from octopipe.store.ledger import Ledger
from octopipe.store.lock import RunLock, is_held
from support.ledger import WALK_CLASSIFY_JUDGE, run_meta, units

N_UNITS = 600

# A toy runner: takes the lock, recovers, then claims 7 units at a time and records 5 of them
# one transaction each (leaving 2 in flight), with an attempt row per success.
RUNNER = """
import sys
from octopipe.store.ledger import Ledger
from octopipe.store.lock import RunLock
from octopipe.store.records import AttemptRecord

run_dir = sys.argv[1]
lock = RunLock(run_dir)
lock.acquire()
ledger = Ledger.open(run_dir + "/ledger.db")
ledger.release_in_flight()
rounds = 0
while True:
    claimed = ledger.claim_pending(0, 7)
    if not claimed:
        break
    for c in claimed[:5]:
        ledger.record_success(c.uid, 0, {"x": 1}, AttemptRecord(outcome="valid", response="ok"))
    rounds += 1
    if rounds == 3:
        print("working", flush=True)
print("finished", flush=True)
"""


def run_until_killed(run_dir: Path, delay_s: float) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "working"
    time.sleep(delay_s)
    os.kill(proc.pid, signal.SIGKILL)  # mid-write, wherever it happens to be
    proc.wait(timeout=60)


def test_kill_9_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    with Ledger.create(tmp_path / "ledger.db", run_meta(), WALK_CLASSIFY_JUDGE) as ledger:
        ledger.add_units(units(N_UNITS))

    valid_so_far = 0
    for delay_s in (0.0, 0.03, 0.1):
        run_until_killed(tmp_path, delay_s)
        assert not is_held(tmp_path)
        with Ledger.open(tmp_path / "ledger.db") as ledger:
            report = ledger.verify()
            assert report.ok, report.to_dict()
            walk = report.steps[0]
            assert walk.valid + walk.pending + walk.in_flight == N_UNITS
            assert walk.in_flight > 0  # the dead runner left claims to recover
            assert walk.valid > valid_so_far  # and made progress
            valid_so_far = walk.valid

    # the last runner resumes and finishes the step
    with RunLock(tmp_path), Ledger.open(tmp_path / "ledger.db") as ledger:
        ledger.release_in_flight()
        while claimed := ledger.claim_pending(0, 50):
            for c in claimed:
                ledger.record_success(c.uid, 0, {"x": 1})
        counts = ledger.counts()
        assert counts[0][UnitStepState.VALID] == N_UNITS
        assert counts[1][UnitStepState.PENDING] == N_UNITS
        attempts_per_unit = ledger._db.execute(
            "SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM attempts GROUP BY uid, step_idx)"
        ).fetchone()[0]
        assert attempts_per_unit in (None, 1)  # a unit is never recorded twice
        assert ledger.verify().ok
        assert ledger.integrity_check() == []
