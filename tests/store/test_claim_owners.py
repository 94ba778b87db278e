"""Claims carry an owner: the runner that made them. Releasing one owner's claims leaves every
other owner's, so a store shared by several workers can give back a dead worker's units only.
Migration ``0004_claim_owners`` brings older ledgers along."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from octopipe.core.states import UnitStepState
from octopipe.store import RunnerIdentity, open_run_store, schema
from octopipe.store.ledger import Ledger
from support.ledger import WALK_CLASSIFY_JUDGE, MakeLedger, pass_step, run_meta, units

ALICE = RunnerIdentity("a" * 32, "host-a", 101, "2026-01-01T00:00:00.000Z")
BOB = RunnerIdentity("b" * 32, "host-b", 202, "2026-01-01T00:00:01.000Z")


def in_flight(ledger: Ledger, step_idx: int) -> int:
    return ledger.counts()[step_idx][UnitStepState.IN_FLIGHT]


def test_releasing_one_owners_claims_leaves_the_others(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(6))
    pass_step(ledger, 0)
    ledger.register_runner(ALICE)
    alice = [c.unit_id for c in ledger.claim_pending(1, 2)]
    ledger.register_runner(BOB)
    bob = [c.unit_id for c in ledger.claim_pending(1, 3)]
    assert in_flight(ledger, 1) == 5

    assert ledger.release_in_flight(owner=ALICE.token) == 2
    assert {u: ledger.unit_states(u)[1] for u in alice + bob} == {
        **dict.fromkeys(alice, UnitStepState.PENDING),
        **dict.fromkeys(bob, UnitStepState.IN_FLIGHT),
    }
    assert ledger.release_in_flight(owner="nobody") == 0
    assert ledger.release_in_flight(owner=BOB.token) == 3
    assert in_flight(ledger, 1) == 0


def test_releasing_without_an_owner_releases_every_claim(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(4))
    pass_step(ledger, 0)
    ledger.claim_pending(1, 1)  # before any runner registered: no owner
    ledger.register_runner(ALICE)
    ledger.claim_pending(1, 2)
    assert ledger.release_in_flight() == 3


def test_two_workers_on_one_file_release_only_their_own(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.create(path, run_meta(), WALK_CLASSIFY_JUDGE) as setup:
        setup.add_units(units(4))
        pass_step(setup, 0)
    one, two = open_run_store(path), open_run_store(path)
    try:
        one.register_runner(ALICE)
        two.register_runner(BOB)
        one.claim_pending(1, 2)
        mine = [c.unit_id for c in two.claim_pending(1, 2)]
        assert two.release_in_flight(owner=ALICE.token) == 2  # ALICE died; BOB frees hers
        assert [one.unit_states(u)[1] for u in mine] == [UnitStepState.IN_FLIGHT] * 2
    finally:
        one.close()
        two.close()


def test_registering_the_same_runner_twice_keeps_one_record(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.create(path, run_meta(), WALK_CLASSIFY_JUDGE) as ledger:
        ledger.register_runner(ALICE)
        ledger.register_runner(ALICE)
        ledger.register_runner(BOB)
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT token, host, pid, started_at FROM runners ORDER BY id").fetchall()
    conn.close()
    assert rows == [
        (ALICE.token, "host-a", 101, ALICE.started_at),
        (BOB.token, "host-b", 202, BOB.started_at),
    ]


def test_this_process_has_a_fresh_identity_each_time() -> None:
    first, second = RunnerIdentity.here(), RunnerIdentity.here()
    assert first.token != second.token and len(first.token) == 32
    assert first.pid == second.pid and first.host


def old_ledger(path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ledger written before claims had owners (every migration up to
    ``0003_attempts_by_step``), two units claimed."""
    before = [name for name, _ in schema.MIGRATIONS].index("0004_claim_owners")
    with monkeypatch.context() as patch:
        patch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:before])
        with Ledger.create(path, run_meta(), WALK_CLASSIFY_JUDGE) as ledger:
            ledger.add_units(units(3))
    conn = sqlite3.connect(path, isolation_level=None)  # what that octopipe's runner left
    conn.execute("UPDATE unit_steps SET state = 'valid', attempts = 1, output_json = '{}'")
    conn.execute(
        """INSERT INTO unit_steps(uid, step_idx, state, updated_at) SELECT uid, 1,
           CASE WHEN uid <= 2 THEN 'in_flight' ELSE 'pending' END, 'then' FROM units"""
    )
    conn.close()
    return path


def test_an_older_ledger_stays_readable_and_gains_owners_when_a_writer_opens_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = old_ledger(tmp_path / "ledger.db", monkeypatch)
    with open_run_store(path, readonly=True) as reader:  # status, verify ... need no upgrade
        assert reader.counts()[1][UnitStepState.IN_FLIGHT] == 2
        assert reader.verify().ok
    with open_run_store(path) as writer:
        assert writer.release_in_flight(owner=ALICE.token) == 0  # claims of nobody known
        assert writer.release_in_flight() == 2
        writer.register_runner(ALICE)
        assert len(writer.claim_pending(1, 3)) == 3
        assert writer.release_in_flight(owner=ALICE.token) == 3
    conn = sqlite3.connect(path)
    names = [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY seq")]
    conn.close()
    assert names == [name for name, _ in schema.MIGRATIONS]
    assert "0004_claim_owners" in names
