"""Diagnostics (D): per step the funnel and the failures grouped by normalised error, with
counts and sample units; revalidate from here. Troubleshoot (T): the top errors, samples and
the run's config sent to a model the user picks, the answer shown with its cost."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from octopipe.tui.screens.base import OctoScreen
from octopipe.tui.screens.report import money, pct


def diagnostics_text(report: Any) -> Text:
    out = Text()
    for step in report.steps:
        validation = sum(
            v for k, v in step.failed_by_stage.items() if k in ("parse", "schema", "rules")
        )
        hard = step.failed - validation
        out.append(f"{step.name}", style="bold")
        out.append(
            f" ({step.scope}): expected {step.input:,}, valid {step.valid:,} "
            f"({pct(step.yield_)}), validation failures {validation:,}, hard failures {hard:,}, "
            f"retrying {step.retrying:,}\n"
        )
        if not step.errors:
            out.append("    no failures\n", style="dim")
        for error in step.errors:
            out.append(f"    {error.count:>6,} ", style="bold red")
            out.append(f"[{error.stage or '?'}] {error.message}\n")
            if error.samples:
                out.append(f"           e.g. {', '.join(error.samples)}\n", style="dim")
        if step.error_groups > len(step.errors):
            out.append(f"    … {step.error_groups - len(step.errors)} more group(s)\n", style="dim")
    out.append(f"\ncost {money(report.usage.cost)}\n")
    return out


class DiagnosticsScreen(OctoScreen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("v", "revalidate", "Revalidate"),
        Binding("c", "copy", "Copy"),
        Binding("t", "troubleshoot", "Troubleshoot"),
    ]

    def __init__(self, run: str) -> None:
        super().__init__()
        self.run_name = run
        self.text = Text("reading the run's report …")

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static(self.text, id="diag-text")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"diagnostics · {self.run_name}"
        self.load()

    def load(self) -> None:
        name = self.run_name

        def show(report: Any) -> None:
            self.text = diagnostics_text(report)
            self.query_one("#diag-text", Static).update(self.text)

        self.octo.background(lambda: self.octo.queries.report(name), show, what="diagnostics")

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.text.plain)
        self.notify("diagnostics copied to the clipboard")

    def action_revalidate(self) -> None:
        if self.octo.read_only:
            self.notify("read-only mode: revalidate is not allowed", severity="warning")
            return
        name = self.run_name

        def done(result: Any) -> None:
            self.notify(f"{result.message}\nCLI: {result.command}", title="revalidate")
            self.load()

        self.octo.background(lambda: self.octo.control.revalidate(name), done, what="revalidate")

    def action_troubleshoot(self) -> None:
        if self.octo.read_only:
            self.notify("read-only mode: troubleshoot is not allowed", severity="warning")
            return
        self.app.push_screen(TroubleshootScreen(self.run_name))


class TroubleshootScreen(OctoScreen):
    """T: the run's top errors, samples and config sent to the cheapest configured model (the
    emulator when no key is set); the answer shown with its cost."""

    BINDINGS = [Binding("escape", "back", "Back"), Binding("c", "copy", "Copy")]

    def __init__(self, run: str, provider: str | None = None, model: str | None = None) -> None:
        super().__init__()
        self.run_name = run
        self.provider = provider
        self.model = model
        self.text = Text("asking the model …")

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static(self.text, id="troubleshoot-answer")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.run_name} · troubleshoot"
        name, provider, model = self.run_name, self.provider, self.model
        self.octo.background(
            lambda: self.octo.queries.troubleshoot(name, provider, model),
            self._show,
            what="troubleshoot",
        )

    def _show(self, result: Any) -> None:
        self.text = Text()
        self.text.append(f"{result.provider}/{result.model}", style="bold")
        self.text.append(
            f"  {result.input_tokens:,} in / {result.output_tokens:,} out; "
            f"cost {result.cost_text}\n\n"
        )
        self.text.append(result.answer)
        self.query_one("#troubleshoot-answer", Static).update(self.text)

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.text.plain)

    def action_back(self) -> None:
        self.app.pop_screen()
