"""The dashboard over fixture runs in every state: columns, keys, live refresh, --dump."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from octopipe.engine.browse import RunIndex
from octopipe.store.ledger import Ledger
from support.tui import PAUSE_REASONS, settle


def cells(app, name: str) -> dict[str, str]:
    table = app.screen.query_one("#runs")
    keys = [str(c.value) for c in table.columns]
    return dict(zip(keys, (str(c) for c in table.get_row(name)), strict=True))


def names(app) -> list[str]:
    return [str(k.value) for k in app.screen.query_one("#runs").rows]


async def test_every_run_state_is_shown_with_its_columns(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        assert names(app)[:2] == ["running", "detached"]  # live first, then detached
        assert cells(app, "running")["status"] == "running"
        assert cells(app, "detached")["status"] == "detached (no runner)"
        assert cells(app, "pending")["status"] == "pending"
        assert cells(app, "complete")["status"] == "complete"
        assert cells(app, "with_failures")["status"] == "complete with failures"
        assert cells(app, "failed")["status"] == "failed"
        assert cells(app, "killed")["status"] == "killed"
        for name, reason in PAUSE_REASONS.items():
            assert cells(app, name)["status"] == f"paused: {reason}"
        done = cells(app, "with_failures")
        assert done["units"] == "9" and done["valid"] == "6"
        assert done["failed"] == "3 (0/3)"  # expression errors are hard failures
        assert done["progress"].endswith("100%")
        judged = cells(app, "judged")
        assert judged["failed"] == "3 (2/1)"  # two answers failed rules/parse, one provider
        assert judged["cost"] == "unknown"  # the fake model has no price: never "$0"
        assert cells(app, "complete")["cost"] == "$0.00"
        totals = str(app.screen.query_one("#totals").render())
        assert "Runs 12" in totals and "Cost $0.00 + unknown (1 run unpriced)" in totals


async def test_refresh_keeps_the_cursor_on_the_same_run(make_app, runs) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#runs")
        table.move_cursor(row=table.get_row_index("killed"))
        ledger = Ledger.open(runs.dir / "pending" / "ledger.db")
        ledger.update_run(display_name="renamed elsewhere")
        ledger.close()
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert app.screen.current_row().name == "killed"
        assert cells(app, "pending")["run"] == "… renamed elsewhere (pending)"
        await pilot.press("f5")
        await settle(pilot)
        assert app.screen.current_row().name == "killed"


async def test_h_toggles_archived_runs(make_app, runs) -> None:
    (runs.dir / "_archive").mkdir()
    (runs.dir / "complete").rename(runs.dir / "_archive" / "complete")
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        assert "complete" not in names(app)
        await pilot.press("h")
        await settle(pilot)
        assert cells(app, "complete")["run"] == "✓ complete [archived]"
        await pilot.press("h")
        await settle(pilot)
        assert "complete" not in names(app)


async def test_enter_opens_the_run_and_q_quits(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#runs")
        table.move_cursor(row=table.get_row_index("with_failures"))
        await pilot.press("enter")
        await settle(pilot)
        assert type(app.screen).__name__ == "RunDetailScreen"
        assert app.screen.run_name == "with_failures"
        await pilot.press("escape")
        assert type(app.screen).__name__ == "DashboardScreen"
        await pilot.press("q")
    assert app.return_code == 0


async def test_space_selects_and_c_compares(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#runs")
        await pilot.press("c")
        assert "select two or more runs" in str(list(app._notifications)[-1].message)
        for name in ("complete", "with_failures"):
            table.move_cursor(row=table.get_row_index(name))
            await pilot.press("space")
        assert app.screen.selected == {"complete", "with_failures"}
        assert cells(app, "complete")["sel"] == "●"
        await pilot.press("c")
        await settle(pilot)
        text = str(app.screen.query_one("#text-body").render())
        assert "complete (counter, batch, complete): units 6, valid 6, failed 0" in text
        assert "with_failures (counter, batch, complete_with_failures): units 9, valid 6" in text
        assert "octopipe compare complete with_failures" in text


async def test_new_failures_after_start_are_notified(make_app, runs) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        before = len(app._notifications)
        from support.admin import fail_llm_units

        fail_llm_units(runs.dir_paths("judged"), "judge", {"item003": "{}"})
        await pilot.press("ctrl+r")
        await settle(pilot)
        messages = [str(n.message) for n in list(app._notifications)[before:]]
        assert "judged: 1 new failed unit(s)" in messages


def test_run_index_rereads_only_changed_runs(runs) -> None:
    index = RunIndex(runs.dir)
    assert len(index.refresh()) == 12 and index.reads == 12
    index.refresh()
    assert index.reads == 0
    ledger = Ledger.open(runs.dir / "pending" / "ledger.db")
    ledger.update_run(display_name="x")
    ledger.close()
    index.refresh()
    assert index.reads == 1
    runs.release()  # the lock is part of the signature: "running" becomes detached
    rows = {r.name: r for r in index.refresh()}
    assert index.reads == 1 and rows["running"].view.status == "detached"


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "octopipe", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


def test_dump_prints_the_dashboard(runs) -> None:
    done = _cli("tui", "--dump", "--runs-dir", str(runs.dir))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "runs 12  tokens 0 in / 0 out  cost unknown"
    assert lines[1].split()[:3] == ["Run", "Status", "Progress"]
    row = next(line for line in lines if "with_failures" in line)
    assert "complete with failures" in row and "3 (0/3)" in row and "100%" in row


def test_dump_json_totals_say_unknown_when_a_run_has_an_unpriced_call(runs) -> None:
    done = _cli("tui", "--dump", "--json", "--runs-dir", str(runs.dir))
    assert done.returncode == 0, done.stderr
    totals = json.loads(done.stdout)["totals"]
    assert totals["cost_usd"] is None  # 'judged' called the fake model, which has no price
    assert totals["known_cost_usd"] == 0.0 and totals["unknown_cost_runs"] == 1


def test_dump_json_of_one_run_has_the_funnel(runs) -> None:
    done = _cli("tui", "--dump", "--run", "judged", "--json", "--runs-dir", str(runs.dir))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["status"] == "paused" and data["failed_validation"] == 2
    judge = next(s for s in data["funnel"] if s["step"] == "judge")
    assert judge["failed_by_stage"] == {"provider": 1, "rules": 2}
    assert (judge["input"], judge["valid"], judge["failed"], judge["pending"]) == (4, 0, 3, 1)


def test_dump_of_a_missing_run_fails_naming_it(runs) -> None:
    done = _cli("tui", "--dump", "--run", "nope", "--runs-dir", str(runs.dir))
    assert done.returncode != 0
    assert "nope" in done.stderr and done.stdout == ""


@pytest.mark.parametrize("args", [["--json"], ["--dump", "--serve"]])
def test_bad_flag_combinations_are_refused(runs, args) -> None:
    done = _cli("tui", "--runs-dir", str(runs.dir), *args)
    assert done.returncode == 2 and "error:" in done.stderr


def test_non_tui_commands_never_import_textual(runs) -> None:
    code = (
        "import sys\n"
        "from octopipe.cli import cli\n"
        "from octopipe.cli.output import run_guarded\n"
        f"for args in (['ps', '--runs-dir', {str(runs.dir)!r}], ['status', 'complete', "
        f"'--runs-dir', {str(runs.dir)!r}], ['tui', '--dump', '--runs-dir', {str(runs.dir)!r}],"
        f" ['report', 'complete', '--runs-dir', {str(runs.dir)!r}]):\n"
        "    assert run_guarded(cli, args) == 0, args\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
