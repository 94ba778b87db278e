"""Post-processing, run by the runner when a run completes and by ``rerun_post``: recorded in
the ledger, folder code only when allowed, kept current when the results change."""

from __future__ import annotations

import gzip
import json
import sqlite3
import time
from pathlib import Path

import pytest

from octopipe.core.analysis import analyze, captured, parse_analysis_args, render
from octopipe.core.states import RunStatus
from octopipe.engine import script_exec
from octopipe.engine.commands import Retry
from octopipe.engine.control import change_run
from octopipe.engine.exports import exports_current, valid_records
from octopipe.engine.post_view import post_view
from octopipe.engine.postprocess import NO_SCRIPTS, ScriptPermission, rerun_post
from octopipe.errors import RunLocked, UsageError
from octopipe.store.ledger import Ledger
from octopipe.store.lock import RunLock
from support.post import drive, echo_output, make_league_run

ALL = ScriptPermission(everything=True)


def latest(paths) -> dict[str, tuple[str, int | None]]:
    with Ledger.open(paths.ledger, readonly=True) as ledger:
        return {r.name: (r.outcome, r.exit_code) for r in ledger.post_runs()}


def states(paths) -> dict[str, tuple[str, bool]]:
    with Ledger.open(paths.ledger, readonly=True) as ledger:
        return {s.name: (s.state, s.stale) for s in post_view(ledger, paths, live=False)}


def test_every_kind_runs_once_the_run_is_complete_and_is_recorded(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("SOME_API_KEY", "k")
    monkeypatch.setenv("GITHUB_TOKEN", "t")
    monkeypatch.setenv("OCTOPIPE_RUNS_DIR", "x")
    paths = make_league_run(tmp_path)
    outcome = drive(paths, ALL)
    assert outcome.status is RunStatus.COMPLETE
    assert latest(paths) == {
        "files": ("ok", 0),
        "step_script": ("ok", 0),
        "Bands": ("ok", 0),
        "Points CSV": ("ok", 0),
        "Echo": ("ok", 0),
        "Zip": ("ok", 0),
    }
    with Ledger.open(paths.ledger, readonly=True) as ledger:
        records = list(valid_records(ledger, 1))
        failed = ledger.counts()[1]
        rows = {r.name: r for r in ledger.post_runs()}
    # the built-in analysis: Octobatch's text, captured as its script's stdout would be
    spec = parse_analysis_args(["--group-by", "team", "--count-field", "band"])
    assert (paths.outputs / "bands.txt").read_text() == captured(render(analyze(records, spec)))
    csv_spec = parse_analysis_args(
        ["--group-by", "team", "--numeric-field", "points", "--output-format", "csv"]
    )
    assert (paths.outputs / "points.csv").read_bytes().decode() == render(
        analyze(records, csv_spec)
    )
    # the folder script: Octobatch's calling convention, in the run folder, secrets scrubbed
    echo = echo_output(paths)
    assert echo["argv"] == [str(paths.root.resolve()), "one", "two"]
    assert echo["cwd"] == str(paths.root.resolve())
    assert "SOME_API_KEY" not in echo["env"] and "GITHUB_TOKEN" not in echo["env"]
    assert not [name for name in echo["env"] if name.startswith("OCTOPIPE_")]
    assert "HOME" in echo["env"]
    # ... and it read the Octobatch view: one failure line per failed attempt in the ledger
    assert echo["failure_lines"] == sum(n for s, n in failed.items() if s.value != "valid")
    assert echo["failure_lines"] > 0
    assert rows["Echo"].command[1] == str(paths.config_dir.resolve() / "tools" / "echo.py")
    assert "to stderr" in paths.log.read_text()  # stderr went to run.log
    # run-scope script, called as Octobatch calls them
    step = (paths.outputs / "step.txt").read_text().split()
    assert step == ["step_script", str(paths.config_dir.resolve() / "config.yaml")]
    # extraction: one file per valid unit with the content asked for
    extracted = sorted((paths.outputs / "units").iterdir())
    assert [p.name for p in extracted] == sorted(f"{r['unit_id']}.json" for r in records)
    first = json.loads(extracted[0].read_text())
    assert set(first) == {"team", "points"}
    # gzip of an export, refreshed compressed from now on
    assert not (paths.outputs / "judge_validated.jsonl").exists()
    lines = gzip.decompress((paths.outputs / "judge_validated.jsonl.gz").read_bytes()).splitlines()
    assert len(lines) == len(records)
    with Ledger.open(paths.ledger, readonly=True) as ledger:
        assert exports_current(ledger, paths)
    assert rows["Bands"].results_version == rows["Zip"].results_version > 0


def test_folder_scripts_are_skipped_unless_allowed_and_say_what_would_run(tmp_path: Path) -> None:
    paths = make_league_run(tmp_path)
    outcome = drive(paths)
    assert outcome.post is not None
    by_name = {a.action.name: a for a in outcome.post.actions}
    assert (by_name["Echo"].outcome, by_name["step_script"].outcome) == ("skipped", "skipped")
    assert by_name["Bands"].outcome == "ok" and by_name["files"].outcome == "ok"
    assert not (paths.outputs / "echo.json").exists() and not (paths.outputs / "step.txt").exists()
    assert not (paths.root / "chunks").exists()  # no folder code ran: no view was needed
    detail = by_name["Echo"].detail or ""
    assert f"octopipe post {paths.name} --allow-script Echo" in detail
    assert str(paths.config_dir.resolve() / "tools" / "echo.py") in detail
    # allowing one by name runs only that one
    report = rerun_post(paths, ScriptPermission(names=("Echo",)))
    assert {a.action.name: a.outcome for a in report.actions}["Echo"] == "ok"
    assert {a.action.name: a.outcome for a in report.actions}["step_script"] == "skipped"
    assert echo_output(paths)["argv"][1:] == ["one", "two"]


def test_a_script_is_allowed_by_its_path_or_file_name_too(tmp_path: Path) -> None:
    paths = make_league_run(tmp_path)
    drive(paths)
    for name in ("pipelines/League/tools/echo.py", "tools/echo.py", "echo.py", "post_process[2]"):
        report = rerun_post(paths, ScriptPermission(names=(name,)))
        assert {a.action.name: a.outcome for a in report.actions}["Echo"] == "ok", name
    with pytest.raises(UsageError, match=r"--allow-script 'ech0'.*'Echo' \(tools/echo.py\)"):
        rerun_post(paths, ScriptPermission(names=("ech0",)))


def test_post_again_gives_the_same_bytes(tmp_path: Path) -> None:
    paths = make_league_run(tmp_path, lambda c: c["post_process"].pop())  # no gzip
    drive(paths, ALL)
    names = ["bands.txt", "points.csv", "judge_validated.jsonl"]
    before = {n: (paths.outputs / n).read_bytes() for n in names}
    view = {p: p.read_bytes() for p in (paths.root / "chunks").rglob("*.jsonl")}
    units = {p.name: p.read_bytes() for p in (paths.outputs / "units").iterdir()}
    (paths.outputs / "units" / "stray.json").write_text("{}")  # re-running rewrites, never appends
    report = rerun_post(paths, ALL)
    assert report.failed == []
    assert {n: (paths.outputs / n).read_bytes() for n in names} == before
    assert {p: p.read_bytes() for p in (paths.root / "chunks").rglob("*.jsonl")} == view
    assert {p.name: p.read_bytes() for p in (paths.outputs / "units").iterdir()} == units


def test_results_that_change_make_post_processing_stale_until_it_runs_again(tmp_path: Path) -> None:
    paths = make_league_run(tmp_path)
    drive(paths, ALL)
    assert {state for state, _ in states(paths).values()} == {"ok"}
    assert not any(stale for _, stale in states(paths).values())
    # retry the units the rule turned down: the ledger's results move on
    message = change_run(paths, Retry(step_idx=1))
    assert "requeued" in message
    assert all(stale for _, stale in states(paths).values())  # never silently stale
    drive(paths)  # resumed without scripts: built-ins re-run, folder scripts skipped (stale)
    now = states(paths)
    assert now["Bands"] == ("ok", False) and now["files"] == ("ok", False)
    assert now["Echo"] == ("skipped", False)  # recorded at the new results, not run


def test_a_complete_run_resumed_reruns_only_what_is_not_current(tmp_path: Path) -> None:
    paths = make_league_run(tmp_path)
    drive(paths, ALL)
    (paths.outputs / "bands.txt").unlink()
    with Ledger.open(paths.ledger, readonly=True) as ledger:
        before = {r.name: r.id for r in ledger.post_runs()}
    outcome = drive(paths, ALL)
    assert outcome.post is not None
    assert [a.action.name for a in outcome.post.actions] == ["Bands"]  # its output was gone
    assert (paths.outputs / "bands.txt").is_file()
    with Ledger.open(paths.ledger, readonly=True) as ledger:
        after = {r.name: r.id for r in ledger.post_runs()}
    assert [n for n in after if after[n] != before[n]] == ["Bands"]


def test_a_failing_script_is_reported_and_the_run_stays_complete(tmp_path: Path) -> None:
    def failing(config):
        config["post_process"].append(
            {"name": "Broken", "script": "tools/broken.py", "output": "broken.txt"}
        )

    broken = "import sys\nprint('half a report')\nprint('it broke', file=sys.stderr)\nsys.exit(3)\n"
    paths = make_league_run(tmp_path, failing, files={"tools/broken.py": broken})
    outcome = drive(paths, ALL)
    assert outcome.status is RunStatus.COMPLETE and outcome.exit_code == 0
    assert latest(paths)["Broken"] == ("failed", 3)
    assert states(paths)["Broken"] == ("failed", False)
    assert (paths.outputs / "broken.txt").read_text() == "half a report\n"  # what it printed
    assert "Broken| it broke" in paths.log.read_text()
    report = rerun_post(paths, ALL)
    assert [a.action.name for a in report.failed] == ["Broken"]
    assert report.failed[0].detail == "exit status 3"
    with Ledger.open(paths.ledger, readonly=True) as ledger:
        assert ledger.run_info().status is RunStatus.COMPLETE
        assert [r.outcome for r in ledger.post_history("post_process[4]")] == ["failed", "failed"]


def test_a_slow_script_meets_its_time_limit(tmp_path: Path) -> None:
    def slow(config):
        config["post_process"] = [
            {"name": "Slow", "script": "tools/slow.py", "timeout_seconds": 1, "output": "s.txt"}
        ]

    paths = make_league_run(
        tmp_path, slow, files={"tools/slow.py": "import time\ntime.sleep(60)\n"}
    )
    started = time.monotonic()
    drive(paths, ALL)
    assert time.monotonic() - started < 20
    with Ledger.open(paths.ledger, readonly=True) as ledger:
        [row] = [r for r in ledger.post_runs() if r.name == "Slow"]
    assert (row.outcome, row.detail) == ("failed", "timed out after 1 s")


def test_script_timeout_and_output_cap(tmp_path: Path, monkeypatch) -> None:
    slow = script_exec.run_script(
        ["python3", "-c", "import time; print('started', flush=True); time.sleep(60)"],
        cwd=tmp_path,
        timeout_s=1,
    )
    assert slow.stopped == "timed out after 1 s" and slow.exit_code is None
    assert slow.seconds < 10 and b"started" in slow.stdout
    monkeypatch.setattr(script_exec, "MAX_STDOUT_BYTES", 1000)
    out = tmp_path / "big.txt"
    loud = script_exec.run_script(
        ["python3", "-c", "import sys\nwhile True: sys.stdout.write('x' * 4096)"],
        cwd=tmp_path,
        timeout_s=30,
        stdout_to=out,
    )
    assert loud.stopped == "stopped: its output passed 1,000 bytes"
    assert out.stat().st_size == 1000
    assert script_exec.run_script(["/nonexistent/x"], cwd=tmp_path, timeout_s=5).failure


def test_an_interrupted_script_is_run_again_next_time(tmp_path: Path) -> None:
    paths = make_league_run(tmp_path)
    drive(paths, ALL)
    lock = RunLock(paths.root)
    assert lock.try_acquire()
    try:
        with pytest.raises(RunLocked):
            rerun_post(paths, ALL)
    finally:
        lock.release()
    with Ledger.open(paths.ledger) as ledger:  # what a runner killed mid-script leaves behind
        row = ledger.start_post_run(
            2,
            "post_process[2]",
            "Echo",
            "script",
            [],
            "outputs/echo.json",
            ledger.results_version(),
        )
        assert row
    assert states(paths)["Echo"] == ("interrupted", False)
    report = rerun_post(paths, ALL, only_stale=True)
    assert [a.action.name for a in report.actions] == ["Echo"]
    assert states(paths)["Echo"] == ("ok", False)


def test_post_refuses_a_run_that_is_not_complete(tmp_path: Path) -> None:
    paths = make_league_run(tmp_path)
    with pytest.raises(UsageError, match="is pending: post-processing runs on a complete run"):
        rerun_post(paths, NO_SCRIPTS)


def test_the_octobatch_view_holds_the_records_as_octobatch_writes_them(tmp_path: Path) -> None:
    paths = make_league_run(tmp_path)
    drive(paths, ALL)
    chunks = sorted(p.name for p in (paths.root / "chunks").iterdir())
    assert chunks == ["chunk_000", "chunk_001", "chunk_002"]  # 20 units, chunk_size 7
    first = paths.root / "chunks" / "chunk_000"
    assert len((first / "units.jsonl").read_text().splitlines()) == 7
    manifest = json.loads((paths.root / "MANIFEST.json").read_text())
    assert manifest["pipeline"] == ["score", "judge"]
    db = sqlite3.connect(paths.ledger)
    failed = db.execute(
        "SELECT u.unit_id, a.attempt_no, a.stage FROM attempts a JOIN units u USING (uid) "
        "WHERE a.outcome != 'valid' ORDER BY u.uid"
    ).fetchall()
    lines = [
        json.loads(line)
        for path in sorted((paths.root / "chunks").glob("*/judge_failures.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert [(r["unit_id"], r["retry_count"] + 1) for r in lines] == [(u, n) for u, n, _ in failed]
    record = lines[0]
    assert record["failure_stage"] == "validation" and record["step"] == "judge"
    assert record["input"]["unit_id"] == record["unit_id"] and record["input"]["points"] == 3
    assert record["team"] == record["input"]["team"]  # context fields copied to the top level
    assert record["errors"][0]["rule"] == "not_three"
    valid = [
        json.loads(line)
        for path in sorted((paths.root / "chunks").glob("*/judge_validated.jsonl"))
        for line in path.read_text().splitlines()
    ]
    with Ledger.open(paths.ledger, readonly=True) as ledger:
        assert valid == list(valid_records(ledger, 1))


def test_the_script_environment_keeps_no_secret() -> None:
    env = script_exec.scrubbed_env(
        {"PATH": "/bin", "OPENAI_API_KEY": "a", "gh_token": "b", "AWS_SECRET_ACCESS_KEY": "c",
         "DB_PASSWORD": "d", "GDRIVE_CREDENTIALS": "e", "OCTOPIPE_RUNS_DIR": "f", "LANG": "C"}
    )  # fmt: skip
    assert env == {"PATH": "/bin", "LANG": "C", "PYTHONDONTWRITEBYTECODE": "1"}
