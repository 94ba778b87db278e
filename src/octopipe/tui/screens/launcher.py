"""The launcher (N): pipeline, run name (auto), provider and model ("pipeline default" first,
then cheapest first), mode, max units, repeat, max cost; the estimate ``run`` would print,
shown before launch; the run starts detached (``octopipe run ... --detach``) and the screen
follows it."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static

from octopipe.tui.port import LaunchRequest, ModelChoice, PipelineEntry, cli
from octopipe.tui.screens.base import OctoScreen

NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def auto_name(pipeline: str, now: datetime | None = None) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", pipeline).strip("_") or "run"
    return f"{safe}_{(now or datetime.now()).strftime('%Y%m%d_%H%M%S')}"


class LauncherScreen(OctoScreen):
    AUTO_FOCUS = "#pipeline"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+e", "estimate", "Estimate", priority=True),
        Binding("ctrl+s", "launch", "Launch", priority=True),
    ]

    def __init__(self, pipeline: Path | None = None) -> None:
        super().__init__()
        self.preselect = pipeline
        self.entries: list[PipelineEntry] = []
        self.models: list[ModelChoice] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with VerticalScroll(id="launcher-form"):
                yield Label("Pipeline")
                yield Select[int]([], id="pipeline", prompt="reading pipelines …")
                yield Label("Run name")
                yield Input(id="name")
                yield Label("Provider / model")
                yield Select[int]([], id="model", prompt="pipeline default")
                yield Label("Mode")
                yield Select(
                    [("realtime", "realtime"), ("batch (about half price)", "batch")],
                    id="mode",
                    value="realtime",
                    allow_blank=False,
                )
                yield Label("Max units (empty: all)")
                yield Input(id="max_units", type="integer")
                yield Label("Repeat (empty: the pipeline's)")
                yield Input(id="repeat", type="integer")
                yield Label("Max cost in USD (empty: no cap)")
                yield Input(id="max_cost", type="number")
                with Horizontal(classes="buttons"):
                    yield Button("Estimate (Ctrl+E)", id="estimate-button")
                    yield Button("Launch (Ctrl+S)", id="launch-button", variant="primary")
            with VerticalScroll(id="estimate"):
                yield Static(Text("the estimate appears here"), id="estimate-text")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "new run"
        self.octo.background(self.octo.queries.pipelines, self._got_pipelines, what="pipelines")
        self.octo.background(self.octo.queries.models, self._got_models, what="models")

    def _got_pipelines(self, entries: list[PipelineEntry]) -> None:
        self.entries = entries
        select = self.query_one("#pipeline", Select)
        select.set_options(
            [
                (f"{e.name}" + ("" if e.ok else " (does not validate)"), i)
                for i, e in enumerate(entries)
            ]
        )
        if not entries:
            self.query_one("#estimate-text", Static).update(
                Text(f"no pipeline folders in {self.octo.queries.pipelines_dir} (--pipelines-dir)")
            )
            return
        index = next(
            (i for i, e in enumerate(entries) if self.preselect and e.path == self.preselect), 0
        )
        select.value = index

    def _got_models(self, models: list[ModelChoice]) -> None:
        self.models = models
        self.query_one("#model", Select).set_options([(m.label, i) for i, m in enumerate(models)])
        self.query_one("#model", Select).value = 0

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "pipeline" and isinstance(event.value, int):
            self.query_one("#name", Input).value = auto_name(
                self.entries[event.value].name, self.octo.now()
            )

    def request(self) -> LaunchRequest | None:
        pipeline = self.query_one("#pipeline", Select).value
        if not isinstance(pipeline, int):
            self.notify("pick a pipeline first", severity="warning")
            return None
        name = self.query_one("#name", Input).value.strip()
        if not NAME_OK.match(name):
            self.notify("a run name is letters, digits, '_', '-', '.'", severity="error")
            return None
        choice = self.query_one("#model", Select).value
        model = self.models[choice] if isinstance(choice, int) and self.models else None
        try:
            max_units = _int(self.query_one("#max_units", Input).value)
            repeat = _int(self.query_one("#repeat", Input).value)
            cost = self.query_one("#max_cost", Input).value.strip()
            max_cost = float(cost) if cost else None
        except ValueError as exc:
            self.notify(f"not a number: {exc}", severity="error")
            return None
        return LaunchRequest(
            pipeline=self.entries[pipeline].path,
            name=name,
            provider=(model.provider or None) if model else None,
            model=model.model if model else None,
            mode=str(self.query_one("#mode", Select).value),
            max_units=max_units,
            repeat=repeat,
            max_cost=max_cost,
        )

    def action_estimate(self) -> None:
        request = self.request()
        if request is None:
            return
        target = self.query_one("#estimate-text", Static)
        target.update(Text("estimating …"))

        def show(lines: list[str]) -> None:
            command = self._command(request)
            target.update(Text("\n".join(lines) + f"\n\nCLI: {command}"))

        self.octo.background(lambda: self.octo.queries.estimate(request), show, what="estimate")

    def _command(self, request: LaunchRequest) -> str:
        words: list[object] = ["run", request.pipeline, "--run", request.name, f"--{request.mode}"]
        for flag, value in (
            ("--provider", request.provider),
            ("--model", request.model),
            ("--max-units", request.max_units),
            ("--repeat", request.repeat),
            ("--max-cost", request.max_cost),
        ):
            if value is not None:
                words += [flag, value]
        return cli(self.octo.queries.runs_dir, *words, "--detach")

    def action_launch(self) -> None:
        request = self.request()
        if request is None:
            return
        target = self.query_one("#estimate-text", Static)

        def launched(result: object) -> None:
            from octopipe.tui.screens.run_detail import RunDetailScreen

            self.notify(
                f"{getattr(result, 'message', '')}\nCLI: {getattr(result, 'command', '')}",
                title="launched",
                timeout=8,
            )
            self.app.switch_screen(RunDetailScreen(request.name))

        def estimated(lines: list[str]) -> None:
            from octopipe.tui.screens.modals import ConfirmScreen

            body = "\n".join(lines)
            target.update(Text(body))

            def answered(yes: bool | None) -> None:
                if yes:
                    self.octo.background(
                        lambda: self.octo.control.launch(request), launched, what="launch"
                    )

            self.app.push_screen(
                ConfirmScreen(f"Launch {request.name}?", body, self._command(request)), answered
            )

        self.octo.background(
            lambda: self.octo.queries.estimate(request), estimated, what="estimate"
        )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "estimate-button":
            self.action_estimate()
        elif event.button.id == "launch-button":
            self.action_launch()

    def action_back(self) -> None:
        self.app.pop_screen()


def _int(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    value = int(text)
    if value < 1:
        raise ValueError(f"{value} (give 1 or more)")
    return value
