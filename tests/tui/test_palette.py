"""The command palette (Ctrl+P) offers the current screen's octopipe commands; running one
does what its key does; read-only mode hides the ones that change anything."""

from __future__ import annotations

from octopipe.store.ledger import Ledger
from octopipe.tui.palette import screen_commands
from support.tui import settle


def status(runs, name: str) -> str:
    ledger = Ledger.open(runs.dir / name / "ledger.db", readonly=True)
    try:
        return ledger.run_info().status.value
    finally:
        ledger.close()


async def test_palette_pause_pauses_the_selected_run(make_app, runs) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#runs")
        table.move_cursor(row=table.get_row_index("detached"))
        await pilot.press("ctrl+p")
        await settle(pilot)
        assert type(app.screen).__name__ == "CommandPalette"
        await pilot.press(*"pause")
        for _ in range(20):
            await settle(pilot)
        await pilot.press("enter")
        for _ in range(20):
            await settle(pilot)
            if status(runs, "detached") == "paused":
                break
        assert status(runs, "detached") == "paused"
        assert type(app.screen).__name__ == "DashboardScreen"
        assert "octopipe pause detached" in str(list(app._notifications)[-1].message)


async def test_palette_lists_the_screens_commands_and_hides_mutating_ones_read_only(
    make_app,
) -> None:
    app = make_app(start_run="with_failures")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        titles = [c.title for c in screen_commands(app.screen, read_only=False)]
        for wanted in (
            "Pause",
            "Resume",
            "Retry failures",
            "Kill",
            "Archive",
            "Rename",
            "Mode",
            "Revalidate",
            "Export",
            "Report",
            "Diagnostics",
            "Troubleshoot",
            "Help",
        ):
            assert wanted in titles
        assert len(titles) == len(set(titles))
        read_only = [c.title for c in screen_commands(app.screen, read_only=True)]
        for hidden in ("Pause", "Resume", "Retry failures", "Kill", "Archive", "Rename"):
            assert hidden not in read_only
        assert {"Report", "Diagnostics", "Help", "Filter"} <= set(read_only)


async def test_palette_in_read_only_mode_offers_no_pause(make_app) -> None:
    app = make_app(read_only=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        dashboard = app.screen
        titles = [c.title for c in screen_commands(dashboard, read_only=app.read_only)]
        assert "Pause" not in titles and "New" not in titles
        assert {"Compare", "Pipelines", "Help"} <= set(titles)
