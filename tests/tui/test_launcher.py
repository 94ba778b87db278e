"""The launcher (N), the pipelines list (L) and help (?)."""

from __future__ import annotations

import asyncio

from octopipe.tui.app import build_app
from octopipe.tui.port import RunControl, RunQueries
from octopipe.tui.screens.launcher import auto_name
from support.tui import settle


def test_auto_name_is_a_valid_new_name() -> None:
    from datetime import datetime

    assert auto_name("My pipe!", datetime(2026, 12, 2, 9, 5, 7)) == "My_pipe_20261202_090507"


async def test_n_estimates_then_launches_detached_and_follows_the_run(runs) -> None:
    """A real ``octopipe run ... --detach`` of an expression pipeline: the screen follows it
    to complete."""
    app = build_app(RunQueries(runs.dir, runs.pipelines), RunControl(runs.dir), refresh_s=0.3)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        launcher = app.screen
        assert type(launcher).__name__ == "LauncherScreen"
        names = [e.name for e in launcher.entries]
        assert names == ["counter", "counter", "judged"]  # folders counter, failing, judged
        models = [m.label for m in launcher.models]
        assert models[:2] == ["pipeline default", "fake: the local emulator (no API key, no cost)"]
        launcher.query_one("#name").value = "launched"
        launcher.query_one("#max_units").value = "3"
        await pilot.press("ctrl+e")
        await settle(pilot)
        estimate = str(launcher.query_one("#estimate-text").render())
        assert estimate.startswith("3 units")
        assert "octopipe run" in estimate and "--run launched --realtime --max-units 3" in estimate
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "Launch launched?" in str(app.screen.query_one(".dialog-title").render())
        await pilot.press("y")
        for _ in range(100):
            await settle(pilot)
            screen = app.screen
            if (
                type(screen).__name__ == "RunDetailScreen"
                and screen.row is not None
                and screen.row.view.status == "complete"
            ):
                break
            await asyncio.sleep(0.1)
        assert type(app.screen).__name__ == "RunDetailScreen"
        assert app.screen.run_name == "launched"
        assert app.screen.row.view.status == "complete"
        assert app.screen.row.view.units == 3


async def test_l_lists_pipelines_with_their_validation(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("l")
        await settle(pilot)
        table = app.screen.query_one("#pipelines-table")
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows[0] == ["counter", "2", "6", "ok"]
        await pilot.press("down", "down")
        await settle(pilot)
        text = str(app.screen.query_one("#pipeline-text").render())
        assert "steps: prep → judge → after" in text
        await pilot.press("c")
        await settle(pilot)
        await pilot.press("down", "enter")  # the "judge" step
        await settle(pilot)
        assert "# template judge.jinja2\nRate {{ name }}" in app.clipboard
        await pilot.press("escape")
        assert type(app.screen).__name__ == "DashboardScreen"


async def test_question_mark_shows_the_keys_of_the_screen(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        text = str(app.screen.query_one("#text-body").render())
        for key, what in (("n", "New"), ("r", "Resume/retry"), ("space", "Select"), ("q", "Quit")):
            assert f"{key:>14}  {what}" in text
        await pilot.press("escape")
        await pilot.press("end", "enter")
        await settle(pilot)
        await pilot.press("question_mark")
        text = str(app.screen.query_one("#text-body").render())
        assert "Retry failures" in text and "Diagnostics" in text
