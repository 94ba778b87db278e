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


def step_text(step: Any) -> Text:
    """One step's funnel line and its failures grouped by normalised error, with samples."""
    out = Text()
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
    return out


def diagnostics_text(report: Any) -> Text:
    """Every step's error groups, then the run's cost."""
    out = Text()
    for step in report.steps:
        out.append_text(step_text(step))
    out.append(f"\ncost {money(report.usage.cost)}\n")
    return out


def diagnostics_markdown(run: str, report: Any) -> str:
    """DIAGNOSTIC.md: per step the funnel and the error groups with counts and samples."""
    lines = [f"# Diagnostics: {run}", ""]
    for step in report.steps:
        text = step_text(step).plain.splitlines()
        lines += [f"## {text[0]}", ""]
        lines += [f"    {line.strip()}" if line.strip() else "" for line in text[1:]]
        lines.append("")
    lines.append(f"Cost: {money(report.usage.cost)}")
    return "\n".join(lines) + "\n"


class DiagnosticsScreen(OctoScreen):
    """D: one step's error groups at a time (← / → move between steps), the run's cost; S
    saves every step's groups to DIAGNOSTIC.md in the run's folder (never the ledger)."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("left", "step(-1)", "Prev step"),
        Binding("right", "step(1)", "Next step"),
        Binding("s", "save", "Save DIAGNOSTIC.md"),
        Binding("v", "revalidate", "Revalidate"),
        Binding("c", "copy", "Copy"),
        Binding("t", "troubleshoot", "Troubleshoot"),
    ]

    def __init__(self, run: str) -> None:
        super().__init__()
        self.run_name = run
        self.text = Text("reading the run's report …")
        self.report: Any = None
        self.step_index = 0

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
            self.report = report
            steps = report.steps
            failing = [i for i, step in enumerate(steps) if step.errors]
            if self.step_index >= len(steps) or not steps[self.step_index].errors:
                self.step_index = failing[0] if failing else 0
            self._paint()

        self.octo.background(lambda: self.octo.queries.report(name), show, what="diagnostics")

    def _paint(self) -> None:
        report = self.report
        out = Text()
        if report.steps:
            index = self.step_index
            out.append(f"step {index + 1} of {len(report.steps)} (← / → move)\n", style="dim")
            out.append_text(step_text(report.steps[index]))
        out.append(f"\ncost {money(report.usage.cost)}\n")
        self.text = out
        self.query_one("#diag-text", Static).update(self.text)

    def action_step(self, delta: int) -> None:
        if self.report is None or not self.report.steps:
            return
        self.step_index = (self.step_index + delta) % len(self.report.steps)
        self._paint()

    def action_save(self) -> None:
        if self.report is None:
            self.notify("the report is still being read", severity="warning")
            return
        if self.octo.read_only:
            self.notify("read-only mode: saving DIAGNOSTIC.md is not allowed", severity="warning")
            return
        name, markdown = self.run_name, diagnostics_markdown(self.run_name, self.report)

        def done(path: Any) -> None:
            self.notify(f"saved {path}", title="diagnostics")

        self.octo.background(
            lambda: self.octo.control.save_diagnostics(name, markdown), done, what="save"
        )

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_copy(self) -> None:
        text = diagnostics_text(self.report).plain if self.report is not None else self.text.plain
        self.app.copy_to_clipboard(text)
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
        pick_troubleshoot_model(self, self.run_name)


def pick_troubleshoot_model(screen: OctoScreen, run: str) -> None:
    """The model picker of T: configured providers' models, cheapest first (the first is
    highlighted, so Enter takes the cheapest; the emulator when nothing is configured); the
    choice opens the troubleshoot screen."""
    from octopipe.tui.screens.modals import ChoiceScreen

    choices = screen.octo.queries.troubleshoot_models()
    labels = [c.label for c in choices]

    def chosen(label: str | None) -> None:
        if label is None:
            return
        choice = choices[labels.index(label)]
        screen.app.push_screen(TroubleshootScreen(run, choice.provider, choice.model))

    screen.app.push_screen(
        ChoiceScreen("Troubleshoot with which model? (cheapest first)", labels), chosen
    )


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
