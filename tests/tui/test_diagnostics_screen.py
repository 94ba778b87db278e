"""D in the run detail: ← / → move between steps' error groups; S saves DIAGNOSTIC.md in the
run's folder (the ledger is untouched); refused in read-only mode."""

from __future__ import annotations

from support.tui import settle


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector).render())


async def _open_diagnostics(pilot, app) -> None:
    await settle(pilot)
    await pilot.press("d")
    for _ in range(50):
        await settle(pilot)
        if getattr(app.screen, "report", None) is not None:
            return
    raise AssertionError("diagnostics never loaded")


async def test_left_right_move_between_steps(make_app) -> None:
    app = make_app(start_run="judged")
    async with app.run_test(size=(160, 48)) as pilot:
        await _open_diagnostics(pilot, app)
        steps = app.screen.report.steps
        assert len(steps) >= 2
        first = app.screen.step_index
        assert steps[first].errors  # opens on the first step with failures
        shown = text_of(app.screen, "#diag-text")
        assert f"step {first + 1} of {len(steps)}" in shown and steps[first].name in shown
        await pilot.press("right")
        second = (first + 1) % len(steps)
        assert app.screen.step_index == second
        assert f"step {second + 1} of {len(steps)}" in text_of(app.screen, "#diag-text")
        await pilot.press("left")
        assert app.screen.step_index == first


async def test_s_saves_diagnostic_md_in_the_run_folder(make_app, runs) -> None:
    app = make_app(start_run="with_failures")
    ledger = runs.dir / "with_failures" / "ledger.sqlite"
    before = ledger.read_bytes() if ledger.exists() else None
    async with app.run_test(size=(160, 48)) as pilot:
        await _open_diagnostics(pilot, app)
        await pilot.press("s")
        target = runs.dir / "with_failures" / "DIAGNOSTIC.md"
        for _ in range(30):
            await settle(pilot)
            if target.exists():
                break
        text = target.read_text()
        assert text.startswith("# Diagnostics: with_failures\n")
        assert "validation failures 0, hard failures 3" in text
        assert "3 [expression] ZeroDivisionError: integer division or modulo by zero" in text
        assert "e.g. item002, item008" in text
        assert f"saved {target}" in str(list(app._notifications)[-1].message)
    if before is not None:
        assert ledger.read_bytes() == before


async def test_s_is_refused_in_read_only_mode(make_app, runs) -> None:
    app = make_app(read_only=True, start_run="with_failures")
    async with app.run_test(size=(160, 48)) as pilot:
        await _open_diagnostics(pilot, app)
        await pilot.press("s")
        await settle(pilot)
        assert not (runs.dir / "with_failures" / "DIAGNOSTIC.md").exists()
        assert "read-only" in str(list(app._notifications)[-1].message)
