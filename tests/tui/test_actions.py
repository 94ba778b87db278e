"""Actions from the TUI go through the engine (and the CLI for starting a runner), ask for
confirmation where they cost money or destroy something, and show the CLI command."""

from __future__ import annotations

from octopipe.core.states import UnitStepState
from octopipe.store.ledger import Ledger
from support.tui import settle


def info(runs, name):
    ledger = Ledger.open(runs.dir / name / "ledger.db", readonly=True)
    try:
        return ledger.run_info()
    finally:
        ledger.close()


def states(runs, name, step):
    ledger = Ledger.open(runs.dir / name / "ledger.db", readonly=True)
    try:
        rows = ledger.unit_page(step, limit=1000)
        return {r.unit_id: r.state for r in rows}
    finally:
        ledger.close()


async def dashboard_at(pilot, name):
    await settle(pilot)
    table = pilot.app.screen.query_one("#runs")
    table.move_cursor(row=table.get_row_index(name))


def last_message(app) -> str:
    return str(list(app._notifications)[-1].message)


async def test_p_pauses_a_detached_run_and_shows_the_command(make_app, runs) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await dashboard_at(pilot, "detached")
        await pilot.press("p")
        await settle(pilot)
        assert info(runs, "detached").status.value == "paused"
        message = last_message(app)
        assert "status set from running to paused" in message
        assert f"CLI: octopipe pause detached --runs-dir {runs.dir}" in message


async def test_k_kills_only_after_confirmation(make_app, runs) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await dashboard_at(pilot, "paused_cost")
        await pilot.press("k")
        assert "octopipe kill paused_cost --yes" in str(
            app.screen.query_one("#confirm-command").render()
        )
        await pilot.press("n")
        await settle(pilot)
        assert info(runs, "paused_cost").status.value == "paused"
        await pilot.press("k", "y")
        await settle(pilot)
        assert info(runs, "paused_cost").status.value == "killed"


async def test_r_resumes_a_paused_run_detached(make_app, runs, spawned) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await dashboard_at(pilot, "paused_request")
        await pilot.press("r", "y")
        await settle(pilot)
    assert spawned.calls == [["run", "paused_request", "--detach", "--runs-dir", str(runs.dir)]]


async def test_r_on_a_running_run_starts_nothing(make_app, spawned) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await dashboard_at(pilot, "running")
        await pilot.press("r")
        await settle(pilot)
        assert "running (pid" in last_message(app)
    assert spawned.calls == []


async def test_r_on_a_finished_run_retries_only_its_failures(make_app, runs, spawned) -> None:
    before = states(runs, "with_failures", 1)
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await dashboard_at(pilot, "with_failures")
        await pilot.press("r", "y")
        await settle(pilot)
        assert "requeued 3 failed unit(s)" in last_message(app)
    after = states(runs, "with_failures", 1)
    for unit, state in before.items():
        want = UnitStepState.PENDING if state is UnitStepState.EXHAUSTED else state
        assert after[unit] is want, unit
    assert spawned.calls[-1][:3] == ["run", "with_failures", "--detach"]


async def test_retry_in_the_run_by_stage_requeues_only_that_stage(make_app, runs, spawned) -> None:
    app = make_app(start_run="judged")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("s", "s", "s")  # stage rules
        await settle(pilot)
        await pilot.press("r")
        command = str(app.screen.query_one("#confirm-command").render())
        assert "octopipe retry judged --step judge --stage rules" in command
        await pilot.press("y")
        await settle(pilot)
    judge = states(runs, "judged", 1)
    assert judge["item000"] is UnitStepState.PENDING  # failed its rule: retried
    assert judge["item001"] is UnitStepState.PENDING
    assert judge["item002"] is UnitStepState.EXHAUSTED  # a provider failure: left alone


async def test_x_archives_a_finished_run_and_refuses_a_live_one(make_app, runs) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await dashboard_at(pilot, "running")
        await pilot.press("x")
        assert "only finished runs can be archived" in last_message(app)
        await dashboard_at(pilot, "complete")
        await pilot.press("x", "y")
        await settle(pilot)
        assert (runs.dir / "_archive" / "complete" / "ledger.db").is_file()
        await pilot.press("h")
        await dashboard_at(pilot, "complete")
        await pilot.press("x")  # unarchive: no confirmation needed
        await settle(pilot)
        assert (runs.dir / "complete" / "ledger.db").is_file()


async def test_w_renames_and_m_switches_mode(make_app, runs) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await dashboard_at(pilot, "paused_timeout")
        await pilot.press("w")
        app.screen.query_one("#prompt-input").value = ""
        await pilot.press(*"Night batch", "enter")
        await settle(pilot)
        assert info(runs, "paused_timeout").display_name == "Night batch"
        await pilot.press("enter")  # open the run
        await settle(pilot)
        await pilot.press("m", "enter")  # the one other mode
        await settle(pilot)
        assert info(runs, "paused_timeout").mode == "realtime"
        assert "CLI: octopipe run paused_timeout --realtime" in last_message(app)


async def test_read_only_refuses_every_change_and_opens_ledgers_read_only(
    make_app, runs, monkeypatch, spawned
) -> None:
    opened: list[bool] = []
    real_open = Ledger.open.__func__

    def spy(cls, path, *, readonly=False, **kwargs):
        opened.append(readonly)
        return real_open(cls, path, readonly=readonly, **kwargs)

    monkeypatch.setattr(Ledger, "open", classmethod(spy))
    app = make_app(read_only=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await dashboard_at(pilot, "with_failures")
        for key in ("p", "k", "r", "x", "w", "n"):
            await pilot.press(key)
            assert "read-only" in last_message(app), key
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("f", "enter")
        await settle(pilot)
        assert type(app.screen).__name__ == "UnitScreen"
    assert opened and all(opened)  # every ledger the TUI opened, it opened read-only
    assert info(runs, "with_failures").status.value == "complete"
    assert spawned.calls == []
