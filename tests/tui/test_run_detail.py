"""Run detail and unit inspector over fixture runs: funnel, units table paged from the ledger
and filtered, log pane, every key; the inspector's raw answers, diff, copy."""

from __future__ import annotations

from octopipe.core.states import UnitStepState
from octopipe.engine.browse import log_tail, units_page
from octopipe.engine.paths import RunPaths
from octopipe.store import ledger as ledger_module
from support.tui import settle


def unit_ids(screen) -> list[str]:
    return [str(k.value) for k in screen.query_one("#units").rows]


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector).render())


async def open_run(make_app, name: str):
    app = make_app(start_run=name)
    return app


async def test_detail_opens_on_the_step_with_failures_and_filters(make_app) -> None:
    app = make_app(start_run="with_failures")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert screen.filter.step == 1  # "label" is where units failed
        assert len(unit_ids(screen)) == 9
        await pilot.press("f")  # all -> failed
        await settle(pilot)
        assert unit_ids(screen) == ["item002", "item005", "item008"]
        assert "state failed [F]" in text_of(screen, "#filter-line")
        await pilot.press("s", "s", "s", "s", "s")  # stage -> render: none failed there
        await settle(pilot)
        assert unit_ids(screen) == [] and "stage render [S]" in text_of(screen, "#filter-line")
        await pilot.press("s")  # expression: all three
        await settle(pilot)
        assert unit_ids(screen) == ["item002", "item005", "item008"]
        await pilot.press("s")  # back to any stage
        await pilot.press("left")  # step "double": nothing failed
        await settle(pilot)
        assert screen.filter.step == 0 and unit_ids(screen) == []
        await pilot.press("right", "f")  # label, retrying (none) ...
        await settle(pilot)
        assert "state retrying" in text_of(screen, "#filter-line")


async def test_search_by_id_prefix_and_log_follow(make_app, runs) -> None:
    app = make_app(start_run="with_failures")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        await pilot.press(*"item00", "5", "enter")
        await settle(pilot)
        assert unit_ids(app.screen) == ["item005"]
        with (runs.dir / "with_failures" / "run.log").open("a") as log:
            log.write("2026-12-02T00:00:00Z [ERROR] item005 went wrong\n")
            log.write("2026-12-02T00:00:01Z [INFO] item001 fine\n")
        await pilot.pause(1.3)
        await settle(pilot)
        lines = [line.text for line in app.screen.query_one("#log").lines]
        assert any("item005 went wrong" in line for line in lines)
        assert not any("item001 fine" in line for line in lines)  # the unit filter
        await pilot.press("e", "e")  # level: warning, then error
        lines = [line.text for line in app.screen.query_one("#log").lines]
        assert lines and all("[ERROR]" in line or "ERROR" in line for line in lines)
        await pilot.press("l")
        assert app.screen.has_class("log-max")
        await pilot.press("v")
        assert app.screen.has_class("batch-view")


async def test_funnel_and_stats_show_the_run(make_app) -> None:
    app = make_app(start_run="judged")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        screen = app.screen
        from rich.console import Console

        console = Console(width=160, record=True)
        console.print(screen.funnel_view)
        drawn = console.export_text()
        assert "judge · LLM" in drawn
        assert "✗ 3 failed" in drawn and "1 at provider" in drawn and "2 at rules" in drawn
        assert "… 1 pending" in drawn
        stats = text_of(screen, "#stats")
        assert "paused: step 'judge' needs an LLM provider" in stats
        assert "no live runner" in stats
        assert "3 failed" in stats or "failed 3" in stats


async def test_enter_opens_the_inspector_with_every_attempt(make_app) -> None:
    app = make_app(start_run="judged")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("f")  # failed units of "judge"
        await settle(pilot)
        assert unit_ids(app.screen) == ["item000", "item001", "item002"]
        app.screen.query_one("#units").focus()
        await pilot.press("down", "enter")  # item001: the answer that was not JSON
        await settle(pilot)
        assert type(app.screen).__name__ == "UnitScreen"
        shown = text_of(app.screen, "#attempt-text")
        assert "step judge, attempt 1: failed at rules" in shown
        assert "── raw answer ──\nnot json at all" in shown
        assert "prompt for item001" in shown
        await pilot.press("c")
        assert app.clipboard.startswith("step judge, attempt 1")
        await pilot.press("f")
        record = text_of(app.screen, "#attempt-text")
        assert '"target": 2' in record and "step prep (expression): valid" in record
        await pilot.press("shift+c")
        assert app.clipboard.startswith("unit item001")
        await pilot.press("d")  # one attempt only: nothing to compare
        assert "no earlier attempt" in str(list(app._notifications)[-1].message)
        await pilot.press("escape")
        assert type(app.screen).__name__ == "RunDetailScreen"


async def test_g_report_d_diagnostics_a_artifacts_i_process(make_app) -> None:
    app = make_app(start_run="with_failures")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("g")
        await settle(pilot)
        report = text_of(app.screen, "#text-body")
        assert "label (expression): input 9, valid 6 (yield 66.7%), failed 3 [expression 3]" in (
            report
        )
        assert "octopipe report with_failures" in report
        await pilot.press("escape", "d")
        await settle(pilot)
        diag = text_of(app.screen, "#diag-text")
        assert "validation failures 0, hard failures 3" in diag
        assert "3 [expression] ZeroDivisionError: integer division or modulo by zero" in diag
        assert "e.g. item002, item008" in diag  # the first and last unit of the group
        await pilot.press("escape", "a")
        await settle(pilot)
        assert "run.log" in text_of(app.screen, "#text-body")
        await pilot.press("escape", "i")
        assert "runner: none (the run lock is free)" in text_of(app.screen, "#text-body")


def test_units_page_is_a_keyset_over_an_index(runs) -> None:
    paths = RunPaths(runs.dir / "with_failures")
    first = units_page(paths, 1, limit=4)
    second = units_page(paths, 1, after_uid=first[-1].uid, limit=4)
    assert [u.unit_id for u in first + second] == [f"item00{i}" for i in range(8)]
    failed = units_page(paths, 1, states=(UnitStepState.EXHAUSTED, UnitStepState.VALID), limit=3)
    assert [u.unit_id for u in failed] == ["item000", "item001", "item002"]
    assert (
        units_page(paths, 1, prefix="item00", states=(UnitStepState.EXHAUSTED,), limit=10)[
            -1
        ].unit_id
        == "item008"
    )
    ledger = ledger_module.Ledger.open(paths.ledger, readonly=True)
    try:
        plans = []
        for sql_args in (
            (
                "SELECT uid FROM unit_steps INDEXED BY unit_steps_state WHERE step_idx=1 AND state='exhausted' AND uid>0 ORDER BY uid LIMIT 5",
                (),
            ),
            (
                "SELECT s.uid FROM units u CROSS JOIN unit_steps s ON s.uid=u.uid WHERE u.unit_id >= 'item0' AND u.unit_id < 'item0\U0010ffff' AND u.unit_id > '' AND s.step_idx=1 ORDER BY u.unit_id LIMIT 5",
                (),
            ),
        ):
            plans.append(
                " ".join(r[3] for r in ledger._db.execute("EXPLAIN QUERY PLAN " + sql_args[0]))
            )
    finally:
        ledger.close()
    assert "USING COVERING INDEX unit_steps_state" in plans[0] and "TEMP B-TREE" not in plans[0]
    assert "USING COVERING INDEX sqlite_autoindex_units_1 (unit_id>? AND unit_id<?)" in plans[1]
    assert "TEMP B-TREE" not in plans[1]


def test_log_tail_reads_only_new_complete_lines(tmp_path) -> None:
    log = tmp_path / "run.log"
    log.write_text("a\nb\npartial")
    chunk = log_tail(log)
    assert chunk.lines == ["a", "b"] and chunk.offset == 4
    with log.open("a") as handle:
        handle.write(" line\nc\n")
    assert log_tail(log, chunk.offset).lines == ["partial line", "c"]
