"""Creating and opening ledger files: round trip, migrations, versions, damaged files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from octopipe.core.states import BatchState, RunStatus, UnitStepState
from octopipe.errors import StoreError
from octopipe.store import schema
from octopipe.store.ledger import Ledger
from octopipe.store.records import StepDef
from support.ledger import WALK_CLASSIFY_JUDGE, pass_step, run_meta, units


def make_store(path: Path, n_units: int = 0) -> Path:
    with Ledger.create(
        path, run_meta(provider="openai", model="gpt-x", max_units=9), WALK_CLASSIFY_JUDGE
    ) as ledger:
        ledger.add_units(units(n_units))
        if n_units:
            pass_step(ledger, 0)
    return path


def test_create_then_open_round_trips_run_and_steps(tmp_path: Path) -> None:
    path = make_store(tmp_path / "ledger.db", n_units=3)
    with Ledger.open(path) as ledger:
        info = ledger.run_info()
        assert (info.name, info.pipeline_name, info.status) == ("run-1", "demo", RunStatus.PENDING)
        assert (info.provider, info.model, info.max_units) == ("openai", "gpt-x", 9)
        assert ledger.steps == WALK_CLASSIFY_JUDGE
        assert ledger.counts()[1][UnitStepState.PENDING] == 3
        assert [uid for uid, _ in ledger.iter_valid(0)] == ["u00000", "u00001", "u00002"]


def test_create_leaves_no_temporary_file_and_uses_wal(tmp_path: Path) -> None:
    path = make_store(tmp_path / "ledger.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.db"]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_create_refuses_to_overwrite_an_existing_ledger(tmp_path: Path) -> None:
    path = make_store(tmp_path / "ledger.db")
    with pytest.raises(StoreError, match="already exists"):
        Ledger.create(path, run_meta(), WALK_CLASSIFY_JUDGE)


def test_create_refuses_run_scope_and_duplicate_steps(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="only per-unit steps"):
        Ledger.create(tmp_path / "a.db", run_meta(), [StepDef("x", "run")])  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="duplicate step names: x"):
        Ledger.create(tmp_path / "b.db", run_meta(), [StepDef("x"), StepDef("x")])
    assert list(tmp_path.iterdir()) == []


def test_migrations_are_recorded_by_name_in_order(tmp_path: Path) -> None:
    path = make_store(tmp_path / "ledger.db")
    conn = sqlite3.connect(path)
    names = [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY seq")]
    assert names == [name for name, _ in schema.MIGRATIONS]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(schema.MIGRATIONS)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == schema.APPLICATION_ID
    conn.close()


def test_opening_an_older_store_applies_the_new_migration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_store(tmp_path / "ledger.db", n_units=2)
    newer = [*schema.MIGRATIONS, ("0099_add_note", "ALTER TABLE run ADD COLUMN note TEXT;")]
    monkeypatch.setattr(schema, "MIGRATIONS", newer)
    with pytest.raises(StoreError, match="older schema"):
        Ledger.open(path, readonly=True)
    with Ledger.open(path) as ledger:
        assert ledger.counts()[1][UnitStepState.PENDING] == 2
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY seq")][-1] == (
        "0099_add_note"
    )
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(newer)
    conn.close()


def test_a_store_from_a_newer_octopipe_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = make_store(tmp_path / "ledger.db")
    conn = sqlite3.connect(path)
    future = len(schema.MIGRATIONS) + 1
    conn.execute(
        "INSERT INTO migrations(seq, name, applied_at, octopipe) "
        "VALUES (?, '0099_from_the_future', 'now', '9.0.0')",
        (future,),
    )
    conn.execute("UPDATE meta SET value = 'octopipe 9.0.0' WHERE key = 'last_writer'")
    conn.execute(f"PRAGMA user_version = {future}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as info:
        Ledger.open(path)
    message = str(info.value)
    assert "octopipe 9.0.0" in message and "0099_from_the_future" in message
    assert "Upgrade octopipe" in message


def test_a_higher_schema_version_alone_is_refused(tmp_path: Path) -> None:
    path = make_store(tmp_path / "ledger.db")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 42")
    conn.close()
    with pytest.raises(StoreError, match="schema version 42"):
        Ledger.open(path, readonly=True)


def test_a_sqlite_file_of_another_application_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not an octopipe run ledger"):
        Ledger.open(path)


def test_a_missing_file_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no run ledger"):
        Ledger.open(tmp_path / "nope.db")


def test_an_empty_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.touch()
    with pytest.raises(StoreError, match="empty"):
        Ledger.open(path)


def test_a_garbage_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(StoreError, match="not a SQLite database"):
        Ledger.open(path)


def test_a_sqlite_header_followed_by_garbage_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.write_bytes(schema.SQLITE_MAGIC + bytes(range(256)) * 64)
    with pytest.raises(StoreError, match="ledger"):
        Ledger.open(path)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.01])
def test_a_store_truncated_mid_file_is_a_store_error(tmp_path: Path, keep: float) -> None:
    path = make_store(tmp_path / "ledger.db", n_units=3_000)
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.truncate(int(size * keep))
    with pytest.raises(StoreError, match="truncated"):
        Ledger.open(path)


def test_pages_overwritten_with_garbage_give_store_errors_not_sqlite_tracebacks(
    tmp_path: Path,
) -> None:
    path = make_store(tmp_path / "ledger.db", n_units=3_000)
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for offset in range(2 * page, len(data), 3 * page):  # every third page after the first two
        data[offset : offset + page] = b"\xa5" * page
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupt"), Ledger.open(path) as ledger:
        ledger.counts()
        ledger.verify()
        list(ledger.iter_valid(0))
        ledger.integrity_check()


def test_integrity_check_is_empty_for_a_sound_file(tmp_path: Path) -> None:
    with Ledger.open(make_store(tmp_path / "ledger.db", n_units=10)) as ledger:
        assert ledger.integrity_check() == []


def test_a_readonly_ledger_reads_but_refuses_writes(tmp_path: Path) -> None:
    path = make_store(tmp_path / "ledger.db", n_units=2)
    with Ledger.open(path, readonly=True) as ledger:
        assert ledger.counts()[0][UnitStepState.VALID] == 2
        with pytest.raises(StoreError, match="read-only"):
            ledger.log_event("info", "TEST", "hello")
        with pytest.raises(StoreError, match="read-only"):
            ledger.add_units(units(1, prefix="x"))


def test_a_reader_sees_a_writers_commits_while_the_writer_stays_open(tmp_path: Path) -> None:
    path = make_store(tmp_path / "ledger.db")
    with Ledger.open(path) as writer, Ledger.open(path, readonly=True) as reader:
        writer.add_units(units(5))
        assert reader.counts()[0][UnitStepState.PENDING] == 5


def test_a_closed_ledger_says_so(tmp_path: Path) -> None:
    ledger = Ledger.open(make_store(tmp_path / "ledger.db"))
    ledger.close()
    with pytest.raises(StoreError, match="closed"):
        ledger.counts()


@pytest.mark.parametrize(
    ("table", "column", "values"),
    [
        ("unit_steps", "state", [s.value for s in UnitStepState]),
        ("batches", "state", [s.value for s in BatchState]),
        ("run", "status", [s.value for s in RunStatus]),
    ],
)
def test_schema_check_constraints_accept_exactly_the_enum_values(
    tmp_path: Path, table: str, column: str, values: list[str]
) -> None:
    path = make_store(tmp_path / "ledger.db", n_units=1)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "INSERT INTO batches(local_id, step_idx, provider, model, state, n_units, content_hash,"
        " created_at) VALUES ('b', 1, 'p', 'm', 'intent', 0, 'h', 'now')"
    )
    for value in values:
        conn.execute(f"UPDATE {table} SET {column} = ?", (value,))
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(f"UPDATE {table} SET {column} = 'bogus'")
    conn.close()
