"""Running a script the user allowed: an argument list, no shell, bounded in time and output.

``run_script(argv, cwd=..., stdout_to=..., timeout_s=..., cancelled=...)`` starts the process in
its own session with a scrubbed environment (:func:`scrubbed_env`: no variable whose name holds
``API_KEY``, ``TOKEN``, ``SECRET``, ``PASSWORD`` or ``CREDENTIAL``, none starting with
``OCTOPIPE_``; ``PYTHONDONTWRITEBYTECODE=1`` so nothing is written beside the script), its
standard input closed. Standard output is streamed to ``stdout_to`` (a temporary file renamed
into place when the script ends, whatever its exit code) or kept for the caller; standard error
is kept for ``run.log``. Past ``timeout_s``, when ``cancelled()`` turns true, or when standard
output passes ``MAX_STDOUT_BYTES``, the whole process group is terminated (then killed after
``KILL_GRACE_S``) and the outcome says why. Standard error past ``MAX_STDERR_BYTES`` is cut.

This runs code with the user's own rights: the environment scrub keeps secrets out of its
reach, not the file system. Callers run folder code only when the user allowed it by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

MAX_STDOUT_BYTES = 64 * 1024 * 1024
MAX_STDERR_BYTES = 1024 * 1024
KILL_GRACE_S = 2.0
POLL_S = 0.05
SECRET_MARKS = ("API_KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")


def scrubbed_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: this process's) without secrets and octopipe's own settings."""
    source = os.environ if environ is None else environ
    kept = {
        name: value
        for name, value in source.items()
        if not any(mark in name.upper() for mark in SECRET_MARKS)
        and not name.upper().startswith("OCTOPIPE_")
    }
    kept["PYTHONDONTWRITEBYTECODE"] = "1"
    return kept


@dataclass(frozen=True)
class ScriptOutcome:
    exit_code: int | None  # None when it was stopped (timeout, cancel, too much output)
    stdout: bytes  # what it printed, when no ``stdout_to`` file was given
    stdout_bytes: int
    stderr: str
    stderr_cut: int  # bytes of standard error dropped past the cap
    seconds: float
    stopped: str | None = None  # why it was stopped, e.g. "timed out after 600 s"
    failure: str | None = None  # it could not start (the reason)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.stopped is None and self.failure is None

    def describe(self) -> str:
        if self.failure:
            return self.failure
        if self.stopped:
            return self.stopped
        return f"exit status {self.exit_code}"


class _Drain(threading.Thread):
    """Copies one pipe into a sink, counting bytes, up to a cap."""

    def __init__(self, pipe: IO[bytes], sink: IO[bytes] | None, cap: int) -> None:
        super().__init__(daemon=True)
        self.pipe, self.sink, self.cap = pipe, sink, cap
        self.kept = bytearray()
        self.total = 0
        self.over = threading.Event()

    def run(self) -> None:
        for chunk in iter(lambda: self.pipe.read(65536), b""):
            room = self.cap - self.total
            self.total += len(chunk)
            if room > 0:
                piece = chunk[:room]
                if self.sink is not None:
                    self.sink.write(piece)
                else:
                    self.kept += piece
            if self.total > self.cap:
                self.over.set()


def run_script(
    argv: Sequence[str],
    *,
    cwd: Path,
    timeout_s: float,
    stdout_to: Path | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    env: Mapping[str, str] | None = None,
    max_stdout: int | None = None,
) -> ScriptOutcome:
    """Run ``argv`` to its end or its limit (see the module notes); never raises for what the
    script does. ``KeyboardInterrupt`` stops the script and propagates."""
    max_stdout = MAX_STDOUT_BYTES if max_stdout is None else max_stdout
    started = time.monotonic()
    sink: IO[bytes] | None = None
    temp: str | None = None
    if stdout_to is not None:
        stdout_to.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{stdout_to.name}.", dir=stdout_to.parent)
        sink = os.fdopen(fd, "wb")
    try:
        try:
            process = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env) if env is not None else scrubbed_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return ScriptOutcome(
                None, b"", 0, "", 0, 0.0, failure=f"could not start: {exc.strerror or exc}"
            )
        assert process.stdout is not None and process.stderr is not None
        out = _Drain(process.stdout, sink, max_stdout)
        err = _Drain(process.stderr, None, MAX_STDERR_BYTES)
        out.start()
        err.start()
        stopped = _supervise(process, started + timeout_s, timeout_s, cancelled, out)
        out.join()
        err.join()
        if sink is not None:
            sink.flush()
            os.fsync(sink.fileno())
            sink.close()
            sink = None
            assert temp is not None and stdout_to is not None
            os.replace(temp, stdout_to)
            temp = None
        return ScriptOutcome(
            exit_code=None if stopped else process.returncode,
            stdout=bytes(out.kept),
            stdout_bytes=min(out.total, max_stdout),
            stderr=err.kept.decode("utf-8", "replace"),
            stderr_cut=max(0, err.total - MAX_STDERR_BYTES),
            seconds=time.monotonic() - started,
            stopped=stopped,
        )
    finally:
        if sink is not None:
            sink.close()
        if temp is not None:
            Path(temp).unlink(missing_ok=True)


def _supervise(
    process: subprocess.Popen[bytes],
    deadline: float,
    timeout_s: float,
    cancelled: Callable[[], bool],
    out: _Drain,
) -> str | None:
    """Wait for the process; stop it at the deadline, on cancel or on too much output."""
    try:
        while True:
            try:
                process.wait(timeout=POLL_S)
                return None
            except subprocess.TimeoutExpired:
                pass
            reason = None
            if time.monotonic() > deadline:
                reason = f"timed out after {timeout_s:g} s"
            elif out.over.is_set():
                reason = f"stopped: its output passed {out.cap:,} bytes"
            elif cancelled():
                reason = "stopped: the run was interrupted"
            if reason is not None:
                _stop(process)
                return reason
    except BaseException:
        _stop(process)
        raise


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the script's whole process group, then kill what is left."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # children that outlived the leader


__all__ = ["ScriptOutcome", "run_script", "scrubbed_env"]
