"""Crash harness support: drive ``octopipe`` as a real subprocess, kill it, resume it, check it.

Used by ``tests/engine/test_crash_harness.py``, ``tests/engine/test_signals.py`` and
``bench/crash_harness.py``. Nothing here reaches into a live runner: the runner is the real
``octopipe`` command line in its own process, killed with ``SIGKILL`` (or signalled) from
outside, and everything afterwards is read from the run folder — the ledger through
``Ledger.verify()`` *and* through plain ``sqlite3`` queries, the exports byte by byte.

The harness (``Harness(...).run()``):

1. runs the pipeline once without interruption (the *reference*), timing its phases: start-up
   (imports), init, local work, final export;
2. draws a kill schedule from ``random.Random(seed)``: each kill has a phase (``init``,
   ``startup``, ``work``, ``export``, then ``cmd:<name>`` for the ``export`` and ``revalidate``
   commands when this octopipe has them) and a uniform draw ``u`` that places it within that
   phase's window (scaled by the reference timings);
3. for each kill: starts ``octopipe run PIPELINE --run NAME`` (while the run does not exist yet)
   or ``octopipe run NAME`` (or the command), waits for the phase's anchor (process start, run
   lock taken, a new export temp file in ``outputs/``), sleeps, ``SIGKILL``s, then checks that
   the ledger verifies clean with no unit in flight, and that ``ps`` never shows a staging
   folder; a process that exits with an error before its kill is reported;
4. resumes to completion (``octopipe run NAME``) and compares everything with the reference:
   ``verify()``, per-step row counts and states straight from SQLite, every (unit, step) row
   and attempt, the run status, and ``outputs/*.jsonl`` byte for byte; then kills and re-runs
   the commands, and compares the exports again.

Timings, not random draws, decide exactly where a kill lands (the machine's speed varies); the
schedule itself is reproducible from the seed, and every kill records where it landed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from octopipe.store.ledger import Ledger
from octopipe.store.lock import is_held

REPO = Path(__file__).resolve().parents[2]
LONG_WALK = REPO / "tests" / "fixtures" / "long_walk"
LEDGER = "ledger.db"
POLL_S = 0.01


# --- starting octopipe ----------------------------------------------------------------------


def octopipe_command() -> list[str]:
    """The ``octopipe`` entry point of this interpreter's environment.

    ``python -m octopipe.cli`` does not work (the package has no ``__main__``), so this is the
    console script next to ``sys.executable``, or failing that the same entry point via ``-c``.
    """
    script = Path(sys.executable).with_name("octopipe")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "from octopipe.cli import main; main()"]


def injected_command(prelude: str) -> list[str]:
    """``octopipe`` with ``prelude`` (Python source) executed first in the same process.

    Used to place a kill or a signal at an exact point of the code (e.g. "right before the
    final export"), where a timer could only land there by luck.
    """
    return [sys.executable, "-c", f"{prelude}\nfrom octopipe.cli import main\nmain()\n"]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OCTOPIPE_RUNS_DIR", None)  # every call passes --runs-dir
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn(
    args: Sequence[str],
    *,
    log: Path | None = None,
    command: Sequence[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``octopipe ARGS`` in the background, output appended to ``log`` (or dropped)."""
    out: Any = subprocess.DEVNULL
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = log.open("ab")
    try:
        return subprocess.Popen(
            [*(command or octopipe_command()), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
            env=child_env(),
            cwd=str(log.parent if log is not None else Path.cwd()),
            start_new_session=True,  # a Ctrl+C in the test's terminal is not the child's
        )
    finally:
        if log is not None:
            out.close()


def octopipe(
    *args: str, timeout: float = 300, command: Sequence[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``octopipe ARGS`` to completion, capturing its output."""
    return subprocess.run(
        [*(command or octopipe_command()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )


def available_commands() -> set[str]:
    """Subcommands listed by ``octopipe --help`` (export, revalidate, verify... once present)."""
    result = octopipe("--help", timeout=60)
    names: set[str] = set()
    in_commands = False
    for line in result.stdout.splitlines():
        if line.strip() == "Commands:":
            in_commands = True
            continue
        if in_commands and line.startswith("  ") and line.strip():
            names.add(line.split()[0])
    return names


def status_json(run: str, runs_dir: Path) -> dict[str, Any]:
    result = octopipe("status", run, "--runs-dir", str(runs_dir), "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def ps_json(runs_dir: Path) -> list[dict[str, Any]]:
    result = octopipe("ps", "--runs-dir", str(runs_dir), "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def kill9(proc: subprocess.Popen[bytes]) -> bool:
    """SIGKILL ``proc`` if it still runs; True when the kill landed on a live process."""
    if proc.poll() is not None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return proc.returncode == -signal.SIGKILL


def wait_for(
    predicate: Callable[[], bool],
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    interval: float = POLL_S,
) -> bool:
    """Poll until ``predicate()``; False on timeout or when ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return predicate()
        time.sleep(interval)
    return False


# --- reading a run folder -------------------------------------------------------------------


@contextlib.contextmanager
def sql(run_dir: Path) -> Iterator[sqlite3.Connection]:
    """A plain read-only sqlite3 connection on the run's ledger (no octopipe code involved)."""
    conn = sqlite3.connect(f"file:{run_dir / LEDGER}?mode=ro", uri=True, timeout=10)
    try:
        yield conn
    finally:
        conn.close()


def run_exists(run_dir: Path) -> bool:
    return (run_dir / LEDGER).is_file()


def stored_status(run_dir: Path) -> str | None:
    """The run status as stored in the ledger (``running`` even for a dead runner)."""
    if not run_exists(run_dir):
        return None
    try:
        with sql(run_dir) as conn:
            row = conn.execute("SELECT status FROM run WHERE id = 1").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def state_counts(run_dir: Path) -> dict[str, dict[str, int]]:
    """``{step name: {state: rows}}`` straight from ``unit_steps``."""
    with sql(run_dir) as conn:
        names = dict(conn.execute("SELECT idx, name FROM steps ORDER BY idx"))
        out: dict[str, dict[str, int]] = {name: {} for name in names.values()}
        for idx, state, n in conn.execute(
            "SELECT step_idx, state, COUNT(*) FROM unit_steps GROUP BY step_idx, state"
        ):
            out[names[idx]][state] = n
    return out


def done_fraction(run_dir: Path, units: int) -> float:
    """Share of units terminal at the first step (the local steps advance together)."""
    try:
        with sql(run_dir) as conn:
            (done,) = conn.execute(
                "SELECT COUNT(*) FROM unit_steps WHERE step_idx = 0 "
                "AND state IN ('valid', 'exhausted')"
            ).fetchone()
    except sqlite3.Error:
        return 0.0
    return done / max(units, 1)


def verify_report(run_dir: Path) -> dict[str, Any]:
    """``Ledger.verify()`` as a dict, opened read-only like the CLI does."""
    ledger = Ledger.open(run_dir / LEDGER, readonly=True)
    try:
        return ledger.verify().to_dict()
    finally:
        ledger.close()


def verify_summary(report: dict[str, Any]) -> dict[str, Any]:
    steps = report["steps"]
    return {
        "ok": report["ok"],
        "missing": sum(len(s["missing"]) for s in steps),
        "duplicated": sum(len(s["duplicated"]) for s in steps),
        "orphaned": sum(len(s["orphaned"]) for s in steps),
        "in_flight": sum(s["in_flight"] for s in steps),
    }


def ledger_problems(run_dir: Path, units: int) -> list[str]:
    """Every way a *finished* run's ledger can be wrong, checked with plain SQL.

    Each unit is valid or exhausted exactly once at each step it reached; it reached step k+1
    exactly when it was valid at step k; nothing is pending, in flight or waiting for a retry;
    no (unit, step) has two attempt rows with one number, and a unit's attempt counter matches.
    """
    problems: list[str] = []
    with sql(run_dir) as conn:
        q = conn.execute
        n_units, n_ids = q("SELECT COUNT(*), COUNT(DISTINCT unit_id) FROM units").fetchone()
        if n_units != units or n_ids != units:
            problems.append(f"units table holds {n_units} rows / {n_ids} ids, expected {units}")
        steps = [row[0] for row in q("SELECT idx FROM steps ORDER BY idx")]
        for idx in steps:
            dup = q(
                "SELECT COUNT(*) FROM (SELECT uid FROM unit_steps WHERE step_idx = ? "
                "GROUP BY uid HAVING COUNT(*) > 1)",
                (idx,),
            ).fetchone()[0]
            if dup:
                problems.append(f"step {idx}: {dup} units with several rows")
            for state, n in q(
                "SELECT state, COUNT(*) FROM unit_steps WHERE step_idx = ? "
                "AND state NOT IN ('valid', 'exhausted') GROUP BY state",
                (idx,),
            ):
                problems.append(f"step {idx}: {n} units left {state}")
            if idx == 0:
                expected_sql = "SELECT uid FROM units WHERE origin_step = 0"
                params: tuple[int, ...] = ()
            else:
                expected_sql = (
                    "SELECT uid FROM unit_steps WHERE step_idx = ? AND state = 'valid' "
                    "UNION SELECT uid FROM units WHERE origin_step = ?"
                )
                params = (idx - 1, idx)
            missing = q(
                f"SELECT COUNT(*) FROM ({expected_sql} EXCEPT "
                "SELECT uid FROM unit_steps WHERE step_idx = ?)",
                (*params, idx),
            ).fetchone()[0]
            extra = q(
                "SELECT COUNT(*) FROM (SELECT uid FROM unit_steps WHERE step_idx = ? "
                f"EXCEPT {expected_sql})",
                (idx, *params),
            ).fetchone()[0]
            if missing:
                problems.append(f"step {idx}: {missing} expected units have no row")
            if extra:
                problems.append(f"step {idx}: {extra} rows for units not expected there")
        dup_attempts = q(
            "SELECT COUNT(*) FROM (SELECT uid, step_idx, attempt_no FROM attempts "
            "GROUP BY uid, step_idx, attempt_no HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        if dup_attempts:
            problems.append(f"{dup_attempts} (unit, step, attempt_no) recorded twice")
        over = q(
            "SELECT COUNT(*) FROM unit_steps s WHERE "
            "(SELECT COUNT(*) FROM attempts a WHERE a.uid = s.uid AND a.step_idx = s.step_idx)"
            " > s.attempts"
        ).fetchone()[0]
        if over:
            problems.append(f"{over} unit-steps with more attempt rows than attempts counted")
        no_record = q(
            "SELECT COUNT(*) FROM unit_steps s WHERE s.state = 'exhausted' AND NOT EXISTS "
            "(SELECT 1 FROM attempts a WHERE a.uid = s.uid AND a.step_idx = s.step_idx)"
        ).fetchone()[0]
        if no_record:
            problems.append(f"{no_record} failed unit-steps without a failure record")
        batches = q("SELECT COUNT(*) FROM batches").fetchone()[0]
        if batches:
            problems.append(f"{batches} provider batches in an expression-only run")
        status = q("SELECT status FROM run WHERE id = 1").fetchone()[0]
        if status != "complete":
            problems.append(f"run status is {status!r}, not 'complete'")
    return problems


def ledger_digest(run_dir: Path) -> str:
    """A hash of every (unit, step) row and every attempt, keyed by unit id (not uid)."""
    digest = hashlib.sha256()
    with sql(run_dir) as conn:
        for row in conn.execute(
            "SELECT u.unit_id, s.step_idx, s.state, s.attempts, s.attempts_base, s.output_json, "
            "s.last_stage, s.last_error FROM unit_steps s JOIN units u ON u.uid = s.uid "
            "ORDER BY u.unit_id, s.step_idx"
        ):
            digest.update(repr(row).encode())
        digest.update(b"--attempts--")
        for row in conn.execute(
            "SELECT u.unit_id, a.step_idx, a.attempt_no, a.mode, a.outcome, a.stage, "
            "a.errors_json FROM attempts a JOIN units u ON u.uid = a.uid "
            "ORDER BY u.unit_id, a.step_idx, a.attempt_no"
        ):
            digest.update(repr(row).encode())
    return digest.hexdigest()


def output_files(run_dir: Path) -> dict[str, str]:
    """``{file name: sha256}`` of the exports (``outputs/*.jsonl``, temp files excluded)."""
    folder = run_dir / "outputs"
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.glob("*.jsonl"))
        if not p.name.startswith(".")
    }


def output_differences(run_dir: Path, reference_dir: Path) -> list[str]:
    ours, theirs = output_files(run_dir), output_files(reference_dir)
    diffs = [f"{name}: missing" for name in sorted(set(theirs) - set(ours))]
    diffs += [f"{name}: unexpected" for name in sorted(set(ours) - set(theirs))]
    diffs += [
        f"{name}: bytes differ"
        for name in sorted(set(ours) & set(theirs))
        if ours[name] != theirs[name]
    ]
    if not theirs:
        diffs.append("the reference run exported nothing")
    return diffs


def leftovers(runs_dir: Path, run: str) -> dict[str, int]:
    """Debris a kill can leave: init staging folders, export temp files."""
    staging = [p for p in runs_dir.glob(f".{run}.*.init") if p.is_dir()]
    outputs = runs_dir / run / "outputs"
    temps = [p for p in outputs.glob(".*")] if outputs.is_dir() else []
    return {"staging_dirs": len(staging), "export_temp_files": len(temps)}


# --- the reference run and its timings ------------------------------------------------------


@dataclass
class Calibration:
    """Seconds, measured on an uninterrupted run of the same pipeline."""

    startup_s: float  # process start until the CLI is ready (imports)
    init_s: float  # process start until the run folder exists
    lock_s: float  # process start until the runner holds the lock
    work_s: float  # lock taken until the run is marked complete
    export_s: float  # marked complete until the process exits (final export)
    total_s: float


def measure_startup() -> float:
    started = time.perf_counter()
    octopipe("--version", timeout=60)
    return time.perf_counter() - started


def reference_run(
    pipeline: Path, repeat: int, runs_dir: Path, name: str = "reference"
) -> tuple[Path, Calibration]:
    """Run the pipeline once, uninterrupted, timing its phases by watching the run folder."""
    startup = measure_startup()
    run_dir = runs_dir / name
    started = time.perf_counter()
    proc = spawn(
        [
            "run",
            str(pipeline),
            "--run",
            name,
            "--repeat",
            str(repeat),
            "--runs-dir",
            str(runs_dir),
            "-q",
            "-y",
        ],
        log=runs_dir.parent / f"{name}.log",
    )
    marks: dict[str, float] = {}
    while proc.poll() is None:
        now = time.perf_counter() - started
        if "init" not in marks and run_exists(run_dir):
            marks["init"] = now
        if "init" in marks and "lock" not in marks and is_held(run_dir):
            marks["lock"] = now
        if "lock" in marks and stored_status(run_dir) == "complete":
            marks["complete"] = now
            break
        time.sleep(POLL_S)
    proc.wait(timeout=600)
    total = time.perf_counter() - started
    if proc.returncode != 0:
        raise AssertionError(f"reference run exited {proc.returncode}; see {name}.log")
    init = marks.get("init", total / 4)
    lock = marks.get("lock", init)
    complete = marks.get("complete", total)
    return run_dir, Calibration(
        startup_s=startup,
        init_s=init,
        lock_s=lock,
        work_s=max(complete - lock, 0.05),
        export_s=max(total - complete, 0.05),
        total_s=total,
    )


# --- the kill schedule ----------------------------------------------------------------------

# Commands killed after the run completes, when this octopipe has them: name -> argv after
# ``octopipe`` with the run name inserted after the first word. The two exports together
# rewrite every file the runner's final export writes.
COMMANDS: dict[str, tuple[str, ...]] = {
    "export": ("export",),
    "export --failures": ("export", "--failures"),
    "revalidate": ("revalidate",),
}


@dataclass(frozen=True)
class Kill:
    phase: str  # init | startup | work | export | cmd:export | cmd:revalidate
    u: float  # uniform in [0, 1): where in the phase's window the kill lands


def make_schedule(
    seed: int,
    kills: int,
    *,
    init: int = 1,
    startup: int = 1,
    export: int = 1,
    commands: Sequence[str] = (),
    per_command: int = 2,
) -> list[Kill]:
    """``kills`` runner kills (init first, export last, startup/work shuffled in between), then
    ``per_command`` kills of each of ``commands`` (e.g. ``export``, ``revalidate``)."""
    rng = random.Random(seed)
    work = kills - init - startup - export
    if work < 0:
        raise ValueError("more init/startup/export kills than kills")
    middle = [Kill("startup", rng.random()) for _ in range(startup)]
    middle += [Kill("work", rng.random()) for _ in range(work)]
    rng.shuffle(middle)
    schedule = [Kill("init", rng.random()) for _ in range(init)]
    schedule += middle
    schedule += [Kill("export", rng.random()) for _ in range(export)]
    for name in commands:
        schedule += [Kill(f"cmd:{name}", rng.random()) for _ in range(per_command)]
    return schedule


@dataclass
class KillRecord:
    phase: str
    u: float
    delay_s: float
    landed: bool  # SIGKILL hit a live process (False: it had already exited)
    exit_code: int | None
    command: str
    done_before: float  # share of units terminal at the first step, before and after
    done_after: float
    status_after: str | None
    verify_ok: bool | None
    in_flight_after: int
    ps_shows_staging: bool
    exports_after: int  # outputs/*.jsonl files present after the kill


@dataclass
class HarnessResult:
    seed: int
    units: int
    kills_planned: int
    kills: int
    missed: int
    resumes: int
    kills_by_phase: dict[str, int]
    units_valid: int
    units_failed: int
    per_step: dict[str, dict[str, int]]
    verify: dict[str, Any]
    cli_verify_ok: bool | None  # `octopipe verify RUN --json` (None: no such command)
    ledger_problems: list[str]
    ledger_identical_to_uninterrupted: bool
    identical_to_uninterrupted: bool
    output_differences: list[str]
    status: str | None
    status_view: str | None
    final_exit_code: int | None
    commands_exercised: list[str]
    identical_after_commands: bool | None
    leftovers: dict[str, int]
    calibration: dict[str, float]
    total_time_s: float
    problems_after_kills: list[str] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.verify.get("ok") is True
            and self.cli_verify_ok is not False
            and not self.ledger_problems
            and not self.problems_after_kills
            and self.ledger_identical_to_uninterrupted
            and self.identical_to_uninterrupted
            and self.identical_after_commands is not False
            and self.status == "complete"
            and self.final_exit_code == 0
        )

    def summary(self, with_log: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_log:
            data.pop("log")
        data["ok"] = self.ok
        return data


class Harness:
    """Kill and resume one run of ``pipeline`` following a seeded schedule."""

    def __init__(
        self,
        pipeline: Path,
        repeat: int,
        work_dir: Path,
        *,
        seed: int,
        kills: int,
        init_kills: int = 1,
        startup_kills: int = 1,
        export_kills: int = 1,
        commands: Sequence[str] | None = None,
        per_command: int = 2,
        run_name: str = "crashed",
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.repeat = repeat
        self.work_dir = work_dir
        self.seed = seed
        self.kills_planned = kills
        self.init_kills = init_kills
        self.startup_kills = startup_kills
        self.export_kills = export_kills
        self.commands = commands
        self.per_command = per_command
        self.name = run_name
        self.progress = progress or (lambda _msg: None)
        self.runs_dir = work_dir / "runs"
        self.ref_runs_dir = work_dir / "reference_runs"
        self.run_dir = self.runs_dir / run_name
        self.log_file = work_dir / "octopipe.log"
        self.records: list[KillRecord] = []
        self.resumes = 0
        self.problems_after_kills: list[str] = []
        self.cli_verify = False

    # --- commands -------------------------------------------------------------------------

    def _run_args(self) -> list[str]:
        if run_exists(self.run_dir):
            self.resumes += 1
            return ["run", self.name, "--runs-dir", str(self.runs_dir), "-q", "-y"]
        return [
            "run",
            str(self.pipeline),
            "--run",
            self.name,
            "--repeat",
            str(self.repeat),
            "--runs-dir",
            str(self.runs_dir),
            "-q",
            "-y",
        ]

    def _command_args(self, name: str) -> list[str]:
        command, *flags = COMMANDS[name]
        return [command, self.name, *flags, "--runs-dir", str(self.runs_dir)]

    # --- one kill -------------------------------------------------------------------------

    def _delay(
        self, kill: Kill, proc: subprocess.Popen[bytes], cal: Calibration, work_left: int
    ) -> tuple[float | None, bool]:
        """Wait for the kill's anchor; return (delay, counted from the process start?).

        A delay of None means the anchor never came (the process exited first): a miss.
        """
        if kill.phase == "init":
            # from the end of the imports to the moment the run folder appears
            lo = 0.8 * cal.startup_s
            return lo + kill.u * max(cal.init_s - lo, 0.05), True
        if kill.phase == "startup":
            # the end of the imports, opening the ledger, recovery, the first instants of work
            return (0.7 + 0.5 * kill.u) * cal.startup_s + 0.2 * kill.u, True
        if kill.phase.startswith("cmd:export"):
            # mid-write: as soon as the command's temp file shows up in outputs/
            return (0.02 * kill.u if self._wait_for_export(proc) else None), False
        if kill.phase.startswith("cmd:"):
            # commands that change the run hold its lock while they work: kill them then
            held = wait_for(lambda: is_held(self.run_dir), 120, proc, interval=0.002)
            return (0.01 * kill.u if held and proc.poll() is None else None), False
        if kill.phase == "work":
            if not wait_for(lambda: is_held(self.run_dir), 60, proc, interval=0.02):
                return None, False
            remaining = cal.work_s * (1 - done_fraction(self.run_dir, self.repeat))
            return kill.u * 1.6 * remaining / (work_left + 2), False
        if kill.phase == "export":
            # the run is marked complete, then the runner writes outputs/: kill it while the
            # first (largest) file is being written, somewhere in the first half of the export
            return (0.5 * kill.u * cal.export_s if self._wait_for_export(proc) else None), False
        raise ValueError(kill.phase)

    def _wait_for_export(self, proc: subprocess.Popen[bytes]) -> bool:
        """Wait until ``proc`` starts writing an export (a new temp file in ``outputs/``)."""
        outputs = self.run_dir / "outputs"
        debris = set(outputs.glob(".*"))  # temp files earlier kills left behind
        writing = wait_for(
            lambda: bool(set(outputs.glob(".*")) - debris), 300, proc, interval=0.002
        )
        return writing and proc.poll() is None

    def _kill_once(self, kill: Kill, cal: Calibration, work_left: int) -> KillRecord:
        exists = run_exists(self.run_dir)
        before = done_fraction(self.run_dir, self.repeat) if exists else 0.0
        if kill.phase == "startup" and not exists:
            kill = Kill("init", kill.u)  # an earlier init kill left no run: this starts init
        if kill.phase.startswith("cmd:"):
            args = self._command_args(kill.phase[4:])
        else:
            args = self._run_args()
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        started = time.monotonic()
        proc = spawn(args, log=self.log_file)
        delay, from_start = self._delay(kill, proc, cal, work_left)
        landed = False
        if delay is not None:
            if from_start:
                delay -= time.monotonic() - started
            time.sleep(max(0.0, delay))
            landed = kill9(proc)
        if not landed:
            proc.wait(timeout=600)
            if proc.returncode != 0:
                with self.log_file.open("rb") as log:
                    log.seek(log_offset)
                    tail = log.read().decode(errors="replace")[-1500:]
                self.problems_after_kills.append(
                    f"`octopipe {' '.join(args[:2])}` exited {proc.returncode} before the "
                    f"planned {kill.phase} kill: {tail}"
                )
        return self._after_kill(kill, args, proc, landed, time.monotonic() - started, before)

    def _after_kill(
        self,
        kill: Kill,
        args: list[str],
        proc: subprocess.Popen[bytes],
        landed: bool,
        elapsed: float,
        before: float,
    ) -> KillRecord:
        verify_ok: bool | None = None
        in_flight = 0
        status = None
        after = before
        if run_exists(self.run_dir):
            report = verify_summary(verify_report(self.run_dir))
            verify_ok, in_flight = report["ok"], report["in_flight"]
            status = stored_status(self.run_dir)
            after = done_fraction(self.run_dir, self.repeat)
            if not verify_ok:
                self.problems_after_kills.append(f"verify failed after {kill}: {report}")
            if in_flight:
                # local steps claim, compute and record in one transaction: a kill can
                # leave no unit in flight (nothing committed as claimed)
                self.problems_after_kills.append(f"{in_flight} units in flight after {kill}")
        shows_staging = False
        if kill.phase == "init":
            names = [v["name"] for v in ps_json(self.runs_dir)]
            shows_staging = any(n != self.name for n in names)
            if shows_staging:
                self.problems_after_kills.append(f"ps shows {names} after an init kill")
        return KillRecord(
            phase=kill.phase,
            u=round(kill.u, 4),
            delay_s=round(elapsed, 3),
            landed=landed,
            exit_code=proc.returncode,
            command=" ".join(args[:2]),
            done_before=round(before, 4),
            done_after=round(after, 4),
            status_after=status,
            verify_ok=verify_ok,
            in_flight_after=in_flight,
            ps_shows_staging=shows_staging,
            exports_after=len(output_files(self.run_dir)) if run_exists(self.run_dir) else 0,
        )

    # --- the whole schedule ---------------------------------------------------------------

    def run(self) -> HarnessResult:
        started = time.perf_counter()
        if self.work_dir.exists():
            shutil.rmtree(self.work_dir)
        self.work_dir.mkdir(parents=True)
        self.progress("reference run (uninterrupted)")
        ref_dir, cal = reference_run(self.pipeline, self.repeat, self.ref_runs_dir)
        self.progress(f"calibration: {asdict(cal)}")
        present = available_commands()
        self.cli_verify = "verify" in present
        commands = (
            [name for name, argv in COMMANDS.items() if argv[0] in present]
            if self.commands is None
            else list(self.commands)
        )
        schedule = make_schedule(
            self.seed,
            self.kills_planned,
            init=self.init_kills,
            startup=self.startup_kills,
            export=self.export_kills,
        )
        work_left = sum(k.phase == "work" for k in schedule)
        for kill in schedule:
            if kill.phase == "work":
                work_left -= 1
            record = self._kill_once(kill, cal, work_left)
            self.records.append(record)
            self.progress(json.dumps(asdict(record)))

        # resume to the end: the run must complete and export
        args = self._run_args()
        final = octopipe(*args, timeout=900)
        self.progress(f"final resume: exit {final.returncode}")
        outputs_diffs = output_differences(self.run_dir, ref_dir)
        identical_after_commands: bool | None = None
        if commands:
            cmd_schedule = make_schedule(
                self.seed + 1,
                0,
                init=0,
                startup=0,
                export=0,
                commands=commands,
                per_command=self.per_command,
            )
            for kill in cmd_schedule:
                record = self._kill_once(kill, cal, 0)
                self.records.append(record)
                self.progress(json.dumps(asdict(record)))
            for name in commands:
                done = octopipe(*self._command_args(name), timeout=900)
                self.progress(f"{name}: exit {done.returncode}")
                if done.returncode != 0:
                    self.problems_after_kills.append(
                        f"`octopipe {name}` exited {done.returncode}: {done.stderr[-500:]}"
                    )
            identical_after_commands = not output_differences(self.run_dir, ref_dir)

        report = verify_report(self.run_dir)
        per_step = state_counts(self.run_dir)
        last = list(per_step.values())[-1]
        landed = [r for r in self.records if r.landed]
        by_phase: dict[str, int] = {}
        for r in landed:
            by_phase[r.phase] = by_phase.get(r.phase, 0) + 1
        view = None
        with contextlib.suppress(Exception):
            view = status_json(self.name, self.runs_dir)["status"]
        cli_verify: bool | None = None
        if self.cli_verify:
            checked = octopipe("verify", self.name, "--runs-dir", str(self.runs_dir), "--json")
            cli_verify = checked.returncode == 0 and json.loads(checked.stdout)["ok"] is True
        return HarnessResult(
            seed=self.seed,
            units=self.repeat,
            kills_planned=len(schedule) + (len(commands) * self.per_command),
            kills=len(landed),
            missed=len(self.records) - len(landed),
            resumes=self.resumes,
            kills_by_phase=by_phase,
            units_valid=last.get("valid", 0),
            units_failed=sum(s.get("exhausted", 0) + s.get("failed", 0) for s in per_step.values()),
            per_step=per_step,
            verify=verify_summary(report),
            cli_verify_ok=cli_verify,
            ledger_problems=ledger_problems(self.run_dir, self.repeat),
            ledger_identical_to_uninterrupted=ledger_digest(self.run_dir) == ledger_digest(ref_dir),
            identical_to_uninterrupted=not outputs_diffs,
            output_differences=outputs_diffs,
            status=stored_status(self.run_dir),
            status_view=view,
            final_exit_code=final.returncode,
            commands_exercised=commands,
            identical_after_commands=identical_after_commands,
            leftovers=leftovers(self.runs_dir, self.name),
            calibration={k: round(v, 3) for k, v in asdict(cal).items()},
            total_time_s=round(time.perf_counter() - started, 2),
            problems_after_kills=self.problems_after_kills,
            log=[asdict(r) for r in self.records],
        )
