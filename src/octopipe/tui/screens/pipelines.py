"""Pipelines (L): every pipeline folder found, its steps and units, what validation says;
copy a step's context (config and template) for an AI assistant; N launches a run of it."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Static

from octopipe.tui.port import PipelineEntry
from octopipe.tui.screens.base import OctoScreen
from octopipe.tui.screens.modals import ChoiceScreen


class PipelinesScreen(OctoScreen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("c", "copy_context", "Copy step context"),
        Binding("n", "launch", "New run"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[PipelineEntry] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            table: DataTable[Text] = DataTable(id="pipelines-table", cursor_type="row")
            yield table
            with VerticalScroll(id="side-text"):
                yield Static(Text("reading pipelines …"), id="pipeline-text")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"pipelines in {self.octo.queries.pipelines_dir}"
        table = self.query_one("#pipelines-table", DataTable)
        for key, label in (
            ("name", "Pipeline"),
            ("steps", "Steps"),
            ("units", "Units"),
            ("ok", "Validation"),
        ):
            table.add_column(label, key=key)
        self.octo.background(self.octo.queries.pipelines, self.show, what="reading pipelines")

    def show(self, entries: list[PipelineEntry]) -> None:
        self.entries = entries
        table = self.query_one("#pipelines-table", DataTable)
        table.clear()
        for index, e in enumerate(entries):
            table.add_row(
                Text(e.name),
                Text(str(len(e.steps))),
                Text("-" if e.units is None else f"{e.units:,}"),
                Text(
                    "ok" if e.ok else f"{len(e.problems)} error(s)",
                    style="green" if e.ok else "red",
                ),
                key=str(index),
            )
        if not entries:
            self.query_one("#pipeline-text", Static).update(
                Text(f"no pipeline folders in {self.octo.queries.pipelines_dir} (--pipelines-dir)")
            )

    def current(self) -> PipelineEntry | None:
        table = self.query_one("#pipelines-table", DataTable)
        if not self.entries or not table.row_count:
            return None
        return self.entries[min(table.cursor_row, len(self.entries) - 1)]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        entry = self.current()
        if entry is None:
            return
        text = Text()
        text.append(f"{entry.name}\n", style="bold")
        text.append(f"{entry.path}\n\nsteps: {' → '.join(entry.steps) or '-'}\n")
        text.append(f"units: {entry.units if entry.units is not None else '-'}\n\n")
        for problem in entry.problems:
            text.append(problem + "\n", style="red")
        for warning in entry.warnings:
            text.append(warning + "\n", style="yellow")
        if entry.ok and not entry.warnings:
            text.append("validates with no problem\n", style="green")
        self.query_one("#pipeline-text", Static).update(text)

    def action_copy_context(self) -> None:
        entry = self.current()
        if entry is None or not entry.steps:
            return

        def picked(step: str | None) -> None:
            if step is None or entry is None:
                return
            folder = entry.path

            def copy(text: str) -> None:
                self.app.copy_to_clipboard(text)
                self.notify(f"context of step {step} copied ({len(text):,} characters)")

            self.octo.background(
                lambda: self.octo.queries.step_context(folder, step), copy, what="step context"
            )

        self.app.push_screen(ChoiceScreen("Copy the context of step", entry.steps), picked)

    def action_launch(self) -> None:
        entry = self.current()
        if self.octo.read_only:
            self.notify("read-only mode: a new run is not allowed", severity="warning")
            return
        from octopipe.tui.screens.launcher import LauncherScreen

        self.app.push_screen(LauncherScreen(entry.path if entry else None))

    def action_back(self) -> None:
        self.app.pop_screen()
