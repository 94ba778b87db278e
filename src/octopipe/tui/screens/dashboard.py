"""The dashboard: every run with its status, progress, counts, cost, ETA; totals on top.

Refreshed every ``app.refresh_s`` seconds in a worker (``RunIndex`` re-reads only changed
ledgers); rows are updated in place by run name, so the cursor and the selection survive.
"""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static
from textual.widgets.data_table import CellDoesNotExist

from octopipe.engine.browse import DashboardRow, totals
from octopipe.tui.format import COLUMNS, row_cells, tokens, totals_cost_text
from octopipe.tui.screens.actions import RunActions

STATUS_STYLE = {
    "running": "bold green",
    "detached": "bold yellow",
    "paused": "yellow",
    "pending": "cyan",
    "complete": "green",
    "complete_with_failures": "yellow",
    "failed": "bold red",
    "killed": "red",
    "unreadable": "bold red",
}


STATUS_WIDTH = 44
"""Longer statuses (a pause's reason) are cut so every column fits 160 columns."""


class DashboardScreen(RunActions):
    BINDINGS = [
        Binding("n", "new_run", "New"),
        Binding("enter", "open_run", "Open", show=False),
        Binding("p", "pause", "Pause"),
        Binding("r", "resume", "Resume/retry"),
        Binding("k", "kill", "Kill"),
        Binding("x", "archive", "Archive"),
        Binding("h", "toggle_archived", "Archived"),
        Binding("w", "rename", "Rename"),
        Binding("space", "select", "Select"),
        Binding("c", "compare", "Compare"),
        Binding("l", "pipelines", "Pipelines"),
        Binding("ctrl+r", "refresh", "Refresh", show=False),
        Binding("f5", "refresh", "Refresh", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, DashboardRow] = {}
        self.selected: set[str] = set()
        self.show_archived = False
        self.loaded = False  # the first refresh has been applied
        self._known_failures: dict[str, int] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="totals")
        table: DataTable[Text] = DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static(id="empty")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#runs", DataTable)
        table.add_column(" ", key="sel", width=1)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self.refresh_now()
        self.set_interval(self.octo.refresh_s, self.refresh_now)

    # --- data ----------------------------------------------------------------------------

    def refresh_now(self) -> None:
        archived = self.show_archived
        self.octo.background(
            lambda: self.octo.queries.dashboard(archived),
            self.apply_rows,
            what="reading runs",
            group="dashboard",
            exclusive=True,
        )

    def apply_rows(self, rows: list[DashboardRow]) -> None:
        table = self.query_one("#runs", DataTable)
        now = self.octo.now()
        wanted = [r.name for r in rows]
        current = {str(key.value) for key in table.rows}
        cursor_name = self._cursor_name()
        for gone in current - set(wanted):
            table.remove_row(gone)
            self.selected.discard(gone)
        for row in rows:
            cells = self._cells(row, now)
            if row.name in current:
                for key, value in cells.items():
                    table.update_cell(row.name, key, value)
            else:
                table.add_row(*cells.values(), key=row.name)
                if self.loaded and row.view.failed:
                    self._known_failures.setdefault(row.name, 0)
        order = {name: i for i, name in enumerate(wanted)}
        if [str(k.value) for k in table.rows] != wanted:
            self._reorder(table, order)
        self._notify_new_failures(rows)
        self.rows = {r.name: r for r in rows}
        self._show_totals(rows)
        if cursor_name in order:
            table.move_cursor(row=table.get_row_index(cursor_name), animate=False)
        self.loaded = True

    def _reorder(self, table: DataTable[Text], order: dict[str, int]) -> None:
        cells = {str(k.value): table.get_row(k) for k in table.rows}
        table.clear()
        for name in sorted(cells, key=lambda n: order[n]):
            table.add_row(*cells[name], key=name)

    def _cells(self, row: DashboardRow, now: datetime) -> dict[str, Text]:
        texts = row_cells(row, now)
        style = STATUS_STYLE.get(row.view.status, "")
        out = {"sel": Text("●" if row.name in self.selected else " ", style="bold magenta")}
        for key, _label in COLUMNS:
            text = texts[key]
            if key == "status" and len(text) > STATUS_WIDTH:
                text = text[: STATUS_WIDTH - 1] + "…"  # the run detail shows all of it
            value = Text(text)
            if key in ("run", "status"):
                value.stylize(style)
            elif key == "failed" and row.view.failed:
                value.stylize("red" if row.failed_hard else "yellow")
            if key in ("units", "valid", "failed", "cost", "eta", "duration"):
                value.justify = "right"
            out[key] = value
        return out

    def _notify_new_failures(self, rows: list[DashboardRow]) -> None:
        """A toast when a run gets failures after the dashboard opened (not for old ones)."""
        for row in rows:
            before = self._known_failures.get(row.name)
            if before is None:
                self._known_failures[row.name] = row.view.failed
                continue
            if row.view.failed > before:
                self.notify(
                    f"{row.name}: {row.view.failed - before:,} new failed unit(s)",
                    severity="warning",
                )
            self._known_failures[row.name] = row.view.failed

    def _show_totals(self, rows: list[DashboardRow]) -> None:
        t = totals(rows)
        text = (
            f" Runs {t.runs}   Tokens {tokens(t.input_tokens)} in / {tokens(t.output_tokens)} out"
            f"   Cost {totals_cost_text(t.known_cost_usd, t.unknown_cost_runs)}"
            f"   Selected {len(self.selected)}"
            + ("   [archived shown]" if self.show_archived else "")
        )
        self.query_one("#totals", Static).update(Text(text, style="bold"))
        empty = self.query_one("#empty", Static)
        empty.display = not rows
        if not rows:
            empty.update(
                Text(
                    f"No runs in {self.octo.queries.runs_dir}. Press N to start one "
                    "(try --provider fake: the local emulator, no cost)."
                )
            )

    def _cursor_name(self) -> str | None:
        table = self.query_one("#runs", DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except CellDoesNotExist:  # the cursor is past a row just removed
            return None
        return str(key.value)

    def current_row(self) -> DashboardRow | None:
        name = self._cursor_name()
        return self.rows.get(name) if name else None

    # --- keys ----------------------------------------------------------------------------

    def action_refresh(self) -> None:
        self.refresh_now()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_run()

    def action_open_run(self) -> None:
        row = self.current_row()
        if row is None:
            return
        if row.view.status == "unreadable":
            self.notify(f"{row.name}: {row.view.reason}", severity="error")
            return
        from octopipe.tui.screens.run_detail import RunDetailScreen

        self.app.push_screen(RunDetailScreen(row.name))

    def action_toggle_archived(self) -> None:
        self.show_archived = not self.show_archived
        self.refresh_now()

    def action_select(self) -> None:
        row = self.current_row()
        if row is None:
            return
        self.selected ^= {row.name}
        table = self.query_one("#runs", DataTable)
        mark = "●" if row.name in self.selected else " "
        table.update_cell(row.name, "sel", Text(mark, style="bold magenta"))
        self._show_totals(list(self.rows.values()))

    def action_compare(self) -> None:
        names = sorted(self.selected)
        if len(names) < 2:
            self.notify("select two or more runs with Space, then C", severity="warning")
            return
        from octopipe.tui.screens.modals import TextScreen
        from octopipe.tui.screens.report import comparison_text

        command = self._cli("compare", *names)

        def show(comparison: object) -> None:
            text = comparison_text(comparison)
            text.append(f"\n\nCLI: {command}", style="dim")
            self.app.push_screen(TextScreen("Compare " + ", ".join(names), text))

        self.octo.background(
            lambda: self.octo.queries.compare(names), show, what="compare", group="reports"
        )

    def action_new_run(self) -> None:
        if self._refused_read_only("a new run"):
            return
        from octopipe.tui.screens.launcher import LauncherScreen

        self.app.push_screen(LauncherScreen())

    def action_pipelines(self) -> None:
        from octopipe.tui.screens.pipelines import PipelinesScreen

        self.app.push_screen(PipelinesScreen())
