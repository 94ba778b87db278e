"""SQLite's write-lock workaround, behind the store: a process queueing a command says it is
waiting (``writer_intent``), the runner's store sees it (``writer_waiting``) and yields."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from octopipe.core.commands import Pause
from octopipe.store import memory_run_store, open_run_store
from octopipe.store.intent import writer_intent, writer_waiting
from octopipe.store.ledger import Ledger
from support.ledger import WALK_CLASSIFY_JUDGE, run_meta


def test_writer_intent_is_visible_to_the_runner(tmp_path: Path) -> None:
    assert not writer_waiting(tmp_path)
    with writer_intent(tmp_path):
        assert writer_waiting(tmp_path)
        with writer_intent(tmp_path):  # shared: several writers may wait at once
            assert writer_waiting(tmp_path)
    assert not writer_waiting(tmp_path)


def test_queueing_a_command_signals_the_runner_while_it_waits_for_the_write_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    Ledger.create(path, run_meta(), WALK_CLASSIFY_JUDGE).close()
    runner = open_run_store(path)
    cli = open_run_store(path)
    queued: list[int] = []
    try:
        assert not runner.writer_waiting()
        with runner.transaction():  # the runner holds SQLite's write lock
            thread = threading.Thread(target=lambda: queued.append(cli.enqueue_command(Pause())))
            thread.start()
            deadline = time.monotonic() + 5
            while not runner.writer_waiting() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert runner.writer_waiting()  # the CLI is waiting, and says so
            assert queued == []
        thread.join(timeout=10)
        assert len(queued) == 1
        assert not runner.writer_waiting()  # the hint goes with the write
        assert [c.kind for c in runner.pending_commands()] == ["pause"]
    finally:
        cli.close()
        runner.close()


def test_a_store_in_memory_never_has_a_writer_waiting() -> None:
    store = memory_run_store(run_meta(), WALK_CLASSIFY_JUDGE)
    store.enqueue_command(Pause())
    assert not store.writer_waiting()
    store.close()
