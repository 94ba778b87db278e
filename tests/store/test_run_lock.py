"""The run lock across real processes: exclusive, visible to readers, released by death."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from octopipe.errors import RunLocked
from octopipe.store import lock as lock_module
from octopipe.store.lock import RunLock, holder_pid, is_held

HOLDER = """
import sys, time
from octopipe.store.lock import RunLock
lock = RunLock(sys.argv[1])
print("acquired" if lock.try_acquire() else "refused", flush=True)
if lock.held:
    time.sleep(120)
"""


def spawn_holder(run_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True
    )


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = spawn_holder(tmp_path)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "acquired"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def test_a_second_process_cannot_acquire_while_the_first_holds(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    lock = RunLock(tmp_path)
    assert lock.try_acquire() is False
    assert not lock.held
    with pytest.raises(RunLocked, match=f"process {holder.pid}"):
        lock.acquire()


def test_is_held_sees_the_holder_and_names_its_pid(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    assert is_held(tmp_path) is True
    assert holder_pid(tmp_path) == holder.pid


def test_the_lock_is_released_when_the_holder_is_killed(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    assert is_held(tmp_path) is False
    assert holder_pid(tmp_path) is None
    lock = RunLock(tmp_path)
    assert lock.try_acquire() is True
    lock.release()


def test_a_process_is_refused_while_this_one_holds(tmp_path: Path) -> None:
    with RunLock(tmp_path) as lock:
        assert lock.held and is_held(tmp_path)
        proc = spawn_holder(tmp_path)
        out, _ = proc.communicate(timeout=60)
        assert out.strip() == "refused"
    assert not is_held(tmp_path)


def test_no_lock_file_means_not_held(tmp_path: Path) -> None:
    assert is_held(tmp_path) is False
    assert holder_pid(tmp_path) is None


def test_release_keeps_the_file_and_clears_the_pid(tmp_path: Path) -> None:
    lock = RunLock(tmp_path)
    assert lock.try_acquire() and lock.try_acquire()  # idempotent for its holder
    assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
    lock.release()
    lock.release()
    assert (tmp_path / ".lock").exists()
    assert (tmp_path / ".lock").read_text() == ""
    assert not is_held(tmp_path)


def test_two_lock_objects_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    first, second = RunLock(tmp_path), RunLock(tmp_path)
    assert first.try_acquire()
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()


def test_a_readers_brief_probe_does_not_make_a_starting_runner_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = os.open(tmp_path / ".lock", os.O_RDONLY | os.O_CREAT, 0o644)
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a reader is mid-probe
    pauses: list[float] = []

    def reader_lets_go(seconds: float) -> None:
        pauses.append(seconds)
        fcntl.flock(probe, fcntl.LOCK_UN)

    monkeypatch.setattr(lock_module.time, "sleep", reader_lets_go)
    lock = RunLock(tmp_path)
    assert lock.try_acquire() is True
    assert len(pauses) == 1
    lock.release()
    os.close(probe)


def test_a_shared_lock_that_stays_is_a_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = os.open(tmp_path / ".lock", os.O_RDONLY | os.O_CREAT, 0o644)
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
    monkeypatch.setattr(lock_module.time, "sleep", lambda seconds: None)
    assert RunLock(tmp_path).try_acquire() is False
    os.close(probe)
