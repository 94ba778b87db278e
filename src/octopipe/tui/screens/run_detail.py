"""One run: the funnel of steps, its stats, open batches, the units table (paged from the
ledger: never every row) and its log, following.

Data comes in workers: the overview every ``app.refresh_s`` seconds, new log lines every
second, a page of units when the step or a filter changes or the cursor nears the end of what
is loaded, the report (cost of first attempts vs retries) on open and every 15 s while live.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Input, RichLog, Static

from octopipe.core.states import UnitStepState
from octopipe.engine.browse import DashboardRow, log_level
from octopipe.tui.format import cost_text, duration, status_text, tokens
from octopipe.tui.screens.actions import RunActions
from octopipe.tui.widgets.funnel import funnel

PAGE = 200
STATE_FILTERS: list[tuple[str, tuple[UnitStepState, ...]]] = [
    ("all", ()),
    ("failed", (UnitStepState.EXHAUSTED,)),
    ("retrying", (UnitStepState.FAILED,)),
    ("valid", (UnitStepState.VALID,)),
    ("pending", (UnitStepState.PENDING,)),
    ("in flight", (UnitStepState.IN_FLIGHT,)),
]
STAGES = [None, "parse", "schema", "rules", "provider", "render", "expression"]
LEVELS = ["all", "warning", "error"]
STATE_LABEL = {
    UnitStepState.EXHAUSTED: "failed",
    UnitStepState.FAILED: "retrying",
    UnitStepState.IN_FLIGHT: "in flight",
}
STATE_STYLE = {"failed": "red", "retrying": "yellow", "valid": "green", "in flight": "cyan"}


@dataclass
class UnitFilter:
    step: int = 0
    state: int = 0  # index in STATE_FILTERS
    stage: int = 0  # index in STAGES
    prefix: str = ""

    def describe(self, steps: list[str]) -> str:
        step = steps[self.step] if self.step < len(steps) else "?"
        stage = STAGES[self.stage] or "any"
        prefix = f"{self.prefix}*" if self.prefix else "any"
        return (
            f"step {step} [←/→]   state {STATE_FILTERS[self.state][0]} [F]   stage {stage} [S]"
            f"   id {prefix} [/]"
        )


def model_text(view: Any, report: Any) -> str:
    """The models the run's LLM calls used (from its attempts, through the report); before
    any call, the run's own setting, else "the pipeline's model"."""
    used = list(report.models) if report is not None else []
    if used:
        return ", ".join(used)
    if view.provider or view.model:
        return f"{view.provider or 'pipeline provider'}/{view.model or 'pipeline model'}"
    return "the pipeline's provider/model (no call yet)"


class RunDetailScreen(RunActions):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("left", "step(-1)", "Step ←", priority=True, show=False),
        Binding("right", "step(1)", "Step →", priority=True, show=False),
        Binding("v", "toggle_view", "Units/batches"),
        Binding("f", "cycle_state", "Filter"),
        Binding("s", "cycle_stage", "Stage"),
        Binding("slash", "search", "Search id", key_display="/"),
        Binding("r", "retry", "Retry failures"),
        Binding("p", "pause", "Pause"),
        Binding("u", "resume_run", "Resume"),
        Binding("k", "kill", "Kill"),
        Binding("x", "archive", "Archive", show=False),
        Binding("m", "mode", "Mode"),
        Binding("d", "diagnostics", "Diagnostics"),
        Binding("t", "troubleshoot", "Troubleshoot"),
        Binding("g", "report", "Report"),
        Binding("l", "toggle_log", "Log"),
        Binding("e", "cycle_level", "Log level", show=False),
        Binding("a", "artifacts", "Artifacts", show=False),
        Binding("i", "process_info", "Process", show=False),
        Binding("w", "rename", "Rename", show=False),
        Binding("y", "revalidate", "Revalidate", show=False),
        Binding("o", "export", "Export", show=False),
    ]

    def __init__(self, run: str) -> None:
        super().__init__()
        self.run_name = run
        self.row: DashboardRow | None = None
        self.stages: dict[str, dict[str, int]] = {}
        self.filter = UnitFilter(step=-1)
        self.last_uid = 0
        self.last_unit_id = ""
        self.more = False
        self.loading_units = False
        self.log_offset: int | None = None
        self.log_lines: list[str] = []
        self.level = 0
        self.report: Any = None
        self._report_started = False
        self.units_loaded = 0
        self.funnel_view: Any = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="detail-top"):
            yield Static(id="funnel")
            yield Static(id="stats")
        yield Static(id="batches-line")
        yield Static(id="filter-line")
        yield Input(placeholder="unit id starts with … (Enter applies, empty clears)", id="search")
        units: DataTable[Text] = DataTable(id="units", cursor_type="row", zebra_stripes=True)
        yield units
        batches: DataTable[Text] = DataTable(id="batches", cursor_type="row")
        yield batches
        yield RichLog(id="log", markup=False, wrap=False, max_lines=5_000)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.run_name
        units = self.query_one("#units", DataTable)
        for key, label in (
            ("unit", "Unit"),
            ("state", "State"),
            ("attempts", "Attempts"),
            ("stage", "Stage"),
            ("error", "Last error"),
            ("updated", "Updated"),
        ):
            units.add_column(label, key=key)
        batches = self.query_one("#batches", DataTable)
        for key, label in (
            ("batch", "Batch"),
            ("step", "Step"),
            ("state", "State"),
            ("at", "At provider"),
            ("provider", "Provider"),
            ("id", "Provider id"),
            ("units", "Requests"),
            ("submitted", "Submitted"),
            ("estimate", "Estimate"),
        ):
            batches.add_column(label, key=key)
        units.focus()
        self.refresh_now()
        # The report reads every attempt (seconds on a million units): it starts once the
        # first units are shown, so its thread does not slow the screen's opening down (a
        # timer starts it anyway should that page never come).
        self.set_timer(2.0, self._start_report)
        self.follow_log()
        self.set_interval(self.octo.refresh_s, self.refresh_now)
        self.set_interval(1.0, self.follow_log)
        self.set_interval(15.0, self._report_if_live)

    # --- overview ------------------------------------------------------------------------

    def refresh_now(self) -> None:
        name = self.run_name
        self.octo.background(
            lambda: self.octo.queries.overview(name),
            self.apply_overview,
            what=f"reading {name}",
            group="overview",
            exclusive=True,
        )

    def apply_overview(self, result: tuple[DashboardRow, dict[str, dict[str, int]]]) -> None:
        first = self.row is None
        before = None if self.row is None else (self.row.view.status, self.row.view.updated_at)
        self.row, self.stages = result
        view = self.row.view
        if first:
            self.filter.step = self._default_step()
            self.reload_units()
        else:
            changed = before != (self.row.view.status, self.row.view.updated_at)
            if changed:
                self.refresh_units_in_view()
            if changed and not self.row.view.live:
                self.load_report()  # the run just stopped: its final figures
        per_step: dict[str, Counter[str]] = {}
        for batch in view.open_batches:
            per_step.setdefault(batch["step"], Counter())[
                batch["at_provider"] or batch["state"]
            ] += 1
        self.funnel_view = funnel(
            view.steps, self.stages, {k: dict(v) for k, v in per_step.items()}, self.filter.step
        )
        self.query_one("#funnel", Static).update(self.funnel_view)
        self.query_one("#stats", Static).update(self._stats())
        counts = ", ".join(f"{n} {s}" for s, n in view.batch_counts.items()) or "none"
        line = f"batches: {counts}"
        if view.open_batches:
            by_state = Counter(b["at_provider"] or b["state"] for b in view.open_batches)
            reqs = sum(b["units"] for b in view.open_batches)
            line += "; open: " + ", ".join(f"{n} {s}" for s, n in by_state.items())
            line += f" ({reqs:,} requests)"
        self.query_one("#batches-line", Static).update(Text(line))
        self._fill_batches(view.open_batches)
        self._show_filter()

    def _default_step(self) -> int:
        steps = self.row.view.steps if self.row else []
        for index, step in enumerate(steps):
            if step.failed or step.retrying:
                return index
        for index, step in enumerate(steps):
            if step.scope == "chunk":
                return index
        return 0

    def _stats(self) -> Text:
        assert self.row is not None
        view, row = self.row.view, self.row
        out = Text()
        out.append(status_text(view.status, view.reason) + "\n", style="bold")
        live = f"live, runner pid {view.runner_pid}" if view.live else "no live runner"
        out.append(f"{live}\n")
        out.append(f"mode {view.mode}; {model_text(view, self.report)}\n")
        out.append(f"cost {cost_text(view.known_cost_usd, view.unknown_cost_attempts)}")
        if self.report is not None:
            first = self.report.first.cost
            retry = self.report.retries.usage.cost
            out.append(
                f"\n  first attempts {cost_text(first.known_usd, first.unknown)}, "
                f"retries {cost_text(retry.known_usd, retry.unknown)}"
            )
        out.append(f"\ntokens {tokens(view.input_tokens)} in / {tokens(view.output_tokens)} out\n")
        now = self.octo.now()
        elapsed = row.elapsed_s(now)
        done = view.steps[-1].valid + view.steps[-1].failed if view.steps else 0
        rate = f"{done / elapsed:.1f} units/s" if elapsed and done else "-"
        out.append(f"elapsed {duration(elapsed)}; {rate}; ETA {duration(row.eta_s(now))}\n")
        out.append(f"units {view.units:,}; valid {view.valid:,}; failed {view.failed:,}")
        out.append(f" ({row.failed_validation:,} validation, {row.failed_hard:,} hard)")
        return out

    def _fill_batches(self, batches: list[dict[str, Any]]) -> None:
        table = self.query_one("#batches", DataTable)
        table.clear()
        for b in batches:
            est = b["estimate_usd"]
            table.add_row(
                Text(str(b["batch"])),
                Text(str(b["step"])),
                Text(str(b["state"])),
                Text(str(b["at_provider"] or "-")),
                Text(str(b["provider"])),
                Text(str(b["provider_batch_id"] or "-")),
                Text(f"{b['units']:,}"),
                Text(str(b["submitted_at"] or "-")),
                Text("unknown" if est is None else f"${est:.4f}"),
                key=str(b["batch"]),
            )

    def _report_if_live(self) -> None:
        if self.row is not None and self.row.view.live:
            self.load_report()

    def _start_report(self) -> None:
        """The first report of this screen, once (later ones follow a live run)."""
        if not self._report_started:
            self._report_started = True
            self.load_report()

    def load_report(self) -> None:
        name = self.run_name

        def got(report: Any) -> None:
            self.report = report
            if self.row is not None:
                self.query_one("#stats", Static).update(self._stats())

        self.octo.background(
            lambda: self.octo.queries.report(name),
            got,
            what="report",
            group="report",
            exclusive=True,
        )

    # --- units ---------------------------------------------------------------------------

    def _query_args(self) -> dict[str, Any]:
        return {
            "states": STATE_FILTERS[self.filter.state][1],
            "stage": STAGES[self.filter.stage],
            "prefix": self.filter.prefix or None,
        }

    def reload_units(self) -> None:
        self.last_uid = 0
        self.last_unit_id = ""
        self.units_loaded = 0
        self.query_one("#units", DataTable).clear()
        self._load_page(replace=True)

    def refresh_units_in_view(self) -> None:
        """The run moved: re-read the first page and show it (a window not yet full is
        replaced, so new units appear; a full one is updated in place)."""
        if self.row is None or self.loading_units:
            return
        name, step, args = self.run_name, self.filter.step, self._query_args()
        limit = PAGE
        self.octo.background(
            lambda: self.octo.queries.units(name, step, limit=limit, **args),
            self._update_rows,
            what="reading units",
            group="units",
        )

    def _update_rows(self, rows: list[Any]) -> None:
        table = self.query_one("#units", DataTable)
        if self.units_loaded < PAGE:
            cursor = table.cursor_row
            self._add_rows(rows, replace=True)
            table.move_cursor(row=min(cursor, max(table.row_count - 1, 0)), animate=False)
            return
        present = {str(k.value) for k in table.rows}
        for unit in rows:
            if unit.unit_id in present:
                for key, value in self._unit_cells(unit).items():
                    table.update_cell(unit.unit_id, key, value)

    def _load_page(self, *, replace: bool = False) -> None:
        if self.row is None or self.loading_units:
            return
        self.loading_units = True
        name, step, args = self.run_name, self.filter.step, self._query_args()
        after, after_id = self.last_uid, self.last_unit_id

        def got(rows: list[Any]) -> None:
            self.loading_units = False
            self._add_rows(rows, replace=replace)
            self._start_report()

        def fetch() -> list[Any]:
            try:
                return self.octo.queries.units(
                    name, step, after_uid=after, after_unit_id=after_id, limit=PAGE, **args
                )
            finally:
                self.loading_units = False

        self.octo.background(fetch, got, what="reading units", group="units")

    def _add_rows(self, rows: list[Any], *, replace: bool) -> None:
        table = self.query_one("#units", DataTable)
        if replace:
            table.clear()
            self.units_loaded = 0
        present = {str(k.value) for k in table.rows}
        for unit in rows:
            if unit.unit_id not in present:
                table.add_row(*self._unit_cells(unit).values(), key=unit.unit_id)
        if rows:
            self.last_uid = rows[-1].uid
            self.last_unit_id = rows[-1].unit_id
        self.units_loaded = table.row_count
        self.more = len(rows) == PAGE
        self._show_filter()

    def _unit_cells(self, unit: Any) -> dict[str, Text]:
        label = STATE_LABEL.get(unit.state, unit.state.value)
        error = (unit.error or "").replace("\n", " ")
        return {
            "unit": Text(unit.unit_id),
            "state": Text(label, style=STATE_STYLE.get(label, "")),
            "attempts": Text(str(unit.attempts), justify="right"),
            "stage": Text(unit.stage or "-"),
            "error": Text(error[:90] + ("…" if len(error) > 90 else "")),
            "updated": Text(unit.updated_at[:19]),
        }

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "units" or not self.more:
            return
        if event.cursor_row >= event.data_table.row_count - 20:
            self._load_page()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id != "units" or event.row_key.value is None:
            return
        from octopipe.tui.screens.unit import UnitScreen

        self.app.push_screen(UnitScreen(self.run_name, str(event.row_key.value)))

    def _show_filter(self) -> None:
        steps = [s.name for s in self.row.view.steps] if self.row else []
        more = " (more below)" if self.more else ""
        text = f"{self.filter.describe(steps)}   showing {self.units_loaded:,}{more}"
        self.query_one("#filter-line", Static).update(Text(text))

    def action_step(self, delta: int) -> None:
        if self.row is None or not self.row.view.steps:
            return
        count = len(self.row.view.steps)
        self.filter.step = (self.filter.step + delta) % count
        self.reload_units()
        self.refresh_now()

    def action_cycle_state(self) -> None:
        self.filter.state = (self.filter.state + 1) % len(STATE_FILTERS)
        self.reload_units()

    def action_cycle_stage(self) -> None:
        self.filter.stage = (self.filter.stage + 1) % len(STAGES)
        self.reload_units()

    def action_search(self) -> None:
        box = self.query_one("#search", Input)
        box.add_class("shown")
        box.value = self.filter.prefix
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "search":
            return
        self.filter.prefix = event.value.strip()
        event.input.remove_class("shown")
        self.query_one("#units", DataTable).focus()
        self.reload_units()
        self._redraw_log()

    def action_toggle_view(self) -> None:
        self.toggle_class("batch-view")

    # --- log -----------------------------------------------------------------------------

    def follow_log(self) -> None:
        name, offset = self.run_name, self.log_offset
        self.octo.background(
            lambda: self.octo.queries.log(name, offset),
            self._add_log,
            what="reading run.log",
            group="log",
            exclusive=True,
        )

    def _add_log(self, chunk: Any) -> None:
        self.log_offset = chunk.offset
        if not chunk.lines:
            return
        self.log_lines = (self.log_lines + chunk.lines)[-5_000:]
        log = self.query_one("#log", RichLog)
        for line in chunk.lines:
            if self._log_wanted(line):
                log.write(Text(line))

    def _log_wanted(self, line: str) -> bool:
        level = log_level(line)
        wanted = LEVELS[self.level]
        if wanted == "error" and level != "error":
            return False
        if wanted == "warning" and level == "info":
            return False
        return not self.filter.prefix or self.filter.prefix in line

    def _redraw_log(self) -> None:
        log = self.query_one("#log", RichLog)
        log.clear()
        for line in self.log_lines:
            if self._log_wanted(line):
                log.write(Text(line))
        log.border_title = f"run.log · level {LEVELS[self.level]} [E]" + (
            f" · unit {self.filter.prefix}*" if self.filter.prefix else ""
        )

    def action_cycle_level(self) -> None:
        self.level = (self.level + 1) % len(LEVELS)
        self._redraw_log()

    def action_toggle_log(self) -> None:
        self.toggle_class("log-max")

    # --- actions -------------------------------------------------------------------------

    def current_row(self) -> DashboardRow | None:
        return self.row

    def action_back(self) -> None:
        box = self.query_one("#search", Input)
        if box.has_class("shown"):
            box.remove_class("shown")
            self.query_one("#units", DataTable).focus()
            return
        self.app.pop_screen()

    def action_resume_run(self) -> None:
        self.action_resume()

    def action_retry(self) -> None:
        """R: requeue the failed units of the selected step (and stage filter), then resume."""
        if self.row is None:
            return
        step = self.row.view.steps[self.filter.step]
        stage = STAGES[self.filter.stage]
        count = step.failed + step.retrying
        if not count:
            self.notify(f"no failed units at step {step.name}", severity="warning")
            return
        what = f"the failed units of step {step.name}" + (f" (stage {stage})" if stage else "")
        self.retry_failures(self.run_name, (self.filter.step, step.name), stage, what)

    def action_report(self) -> None:
        from octopipe.tui.screens.modals import TextScreen
        from octopipe.tui.screens.report import report_text

        name, command = self.run_name, self._cli("report", self.run_name)

        def show(report: Any) -> None:
            text = report_text(report)
            text.append(f"\nCLI: {command}", style="dim")
            self.app.push_screen(TextScreen(f"Report: {name}", text))

        self.octo.background(lambda: self.octo.queries.report(name), show, what="report")

    def action_diagnostics(self) -> None:
        from octopipe.tui.screens.diagnostics import DiagnosticsScreen

        self.app.push_screen(DiagnosticsScreen(self.run_name))

    def action_troubleshoot(self) -> None:
        from octopipe.tui.screens.diagnostics import pick_troubleshoot_model

        if self._refused_read_only("troubleshoot (it calls a model)"):
            return
        pick_troubleshoot_model(self, self.run_name)

    def action_artifacts(self) -> None:
        from octopipe.tui.screens.modals import TextScreen

        name = self.run_name

        def show(files: list[Any]) -> None:
            root = self.octo.queries.paths(name).root
            lines = [str(p.relative_to(root)) for p in files] or ["(no files yet)"]
            self.app.push_screen(TextScreen(f"Files of {name} ({root})", "\n".join(lines)))

        self.octo.background(lambda: self.octo.queries.artifacts(name), show, what="artifacts")

    def action_process_info(self) -> None:
        from octopipe.tui.screens.modals import TextScreen

        if self.row is None:
            return
        view = self.row.view
        paths = self.octo.queries.paths(self.run_name)
        text = (
            f"status: {status_text(view.status, view.reason)}\n"
            f"runner: {'live, pid ' + str(view.runner_pid) if view.live else 'none (the run lock is free)'}\n"
            "liveness is the run lock (.lock), never a guess from process lists\n"
            f"run folder: {paths.root}\nledger: {paths.ledger}\nlog: {paths.log}\n"
            f"runner output: {paths.runner_output}\n\nlast log lines:\n"
            + "\n".join(self.log_lines[-20:])
        )
        self.app.push_screen(TextScreen(f"Process: {self.run_name}", text))
