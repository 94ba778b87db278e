"""The unit inspector: the unit's input fields; per step its state, input record and output;
every attempt (mode, provider/model, batch, tokens, cost, latency) with its rendered prompt,
raw answer and errors; a diff of two attempts' answers; copy; open in ``$EDITOR``."""

from __future__ import annotations

import difflib
import json
import os
import shlex
import subprocess
import tempfile
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Static

from octopipe.core.amounts import format_usd
from octopipe.engine.browse import UnitDetail
from octopipe.tui.screens.base import OctoScreen


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def attempt_text(step: str, attempt: Any) -> str:
    if attempt.mode == "local":
        cost = "-"
    else:
        cost = "unknown" if attempt.cost_usd is None else format_usd(attempt.cost_usd)
    lines = [
        f"step {step}, attempt {attempt.attempt_no}: {attempt.outcome}"
        + (f" at {attempt.stage}" if attempt.stage else ""),
        f"mode {attempt.mode}; {attempt.provider or '-'}/{attempt.model or '-'}"
        + (f"; batch {attempt.batch_local_id}" if attempt.batch_local_id else ""),
        f"tokens {attempt.input_tokens:,} in / {attempt.output_tokens:,} out"
        f" ({attempt.cached_tokens:,} cached); cost {cost}; latency "
        f"{attempt.latency_ms if attempt.latency_ms is not None else '-'} ms",
        f"started {attempt.started_at or '-'}; finished {attempt.finished_at or '-'}",
        "",
        "── errors ──",
        *([_json(e) for e in attempt.errors] or ["(none)"]),
        "",
        "── raw answer ──",
        attempt.response if attempt.response is not None else "(no answer came back)",
        "",
        "── rendered prompt ──",
        attempt.request if attempt.request is not None else "(not recorded)",
    ]
    return "\n".join(lines)


def unit_text(detail: UnitDetail) -> str:
    """Everything about the unit as one text (copy, $EDITOR)."""
    parts = [f"unit {detail.unit_id}", "", "── fields ──", _json(detail.fields)]
    for step in detail.steps:
        row = step.row
        parts += [
            "",
            f"════ step {step.step} ({step.scope}): {row.state.value}, {row.attempts} attempt(s)"
            + (f", last stage {row.stage}" if row.stage else ""),
            "── input record ──",
            _json(row.input),
        ]
        if row.output is not None:
            parts += ["── parsed record (output) ──", _json(row.output)]
        if row.error:
            parts += ["── last error ──", row.error]
        for attempt in step.attempts:
            parts += ["", attempt_text(step.step, attempt)]
    return "\n".join(parts)


def answer_diff(a: Any, b: Any) -> str:
    left = (a.response or "").splitlines()
    right = (b.response or "").splitlines()
    diff = difflib.unified_diff(
        left,
        right,
        f"attempt {a.attempt_no} ({a.outcome})",
        f"attempt {b.attempt_no} ({b.outcome})",
        lineterm="",
    )
    return "\n".join(diff) or "the two raw answers are identical"


class UnitScreen(OctoScreen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("d", "diff", "Diff with previous"),
        Binding("c", "copy", "Copy attempt"),
        Binding("shift+c", "copy_all", "Copy unit", key_display="C"),
        Binding("e", "editor", "Open in $EDITOR"),
        Binding("f", "fields", "Fields/record"),
    ]

    def __init__(self, run: str, unit_id: str) -> None:
        super().__init__()
        self.run_name = run
        self.unit_id = unit_id
        self.detail: UnitDetail | None = None
        self.attempts: list[tuple[str, Any]] = []
        self.current = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="unit-head")
        with Horizontal(id="unit-body"):
            table: DataTable[Text] = DataTable(id="attempts", cursor_type="row")
            yield table
            with VerticalScroll(id="attempt-view"):
                yield Static(id="attempt-text")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.run_name} · {self.unit_id}"
        table = self.query_one("#attempts", DataTable)
        for key, label in (
            ("step", "Step"),
            ("no", "#"),
            ("outcome", "Outcome"),
            ("mode", "Mode"),
            ("model", "Provider/model"),
            ("tokens", "Tokens"),
            ("cost", "Cost"),
            ("ms", "ms"),
        ):
            table.add_column(label, key=key)
        run, unit = self.run_name, self.unit_id
        self.octo.background(lambda: self.octo.queries.unit(run, unit), self.show, what="unit")

    def show(self, detail: UnitDetail | None) -> None:
        if detail is None:
            self.octo.fail("unit", f"no unit {self.unit_id!r} in run {self.run_name}")
            self.app.pop_screen()
            return
        self.detail = detail
        states = ", ".join(f"{s.step} {s.row.state.value}" for s in detail.steps)
        head = Text()
        head.append(f"{detail.unit_id}", style="bold")
        head.append(f"   {states}\n")
        head.append(json.dumps(detail.fields, ensure_ascii=False, default=str)[:400])
        self.query_one("#unit-head", Static).update(head)
        table = self.query_one("#attempts", DataTable)
        table.clear()
        self.attempts = [(s.step, a) for s in detail.steps for a in s.attempts]
        for index, (step, a) in enumerate(self.attempts):
            style = "green" if a.outcome == "valid" else "red"
            cost = (
                "-"
                if a.mode == "local"
                else ("unknown" if a.cost_usd is None else f"${a.cost_usd:.6f}")
            )
            table.add_row(
                Text(step),
                Text(str(a.attempt_no)),
                Text(a.outcome + (f" ({a.stage})" if a.stage else ""), style=style),
                Text(a.mode),
                Text(f"{a.provider or '-'}/{a.model or '-'}"),
                Text(f"{a.input_tokens}+{a.output_tokens}"),
                Text(cost),
                Text(str(a.latency_ms or "-")),
                key=str(index),
            )
        if self.attempts:
            self.current = 0
            self._show_attempt()
        else:
            self.action_fields()

    def _show_attempt(self) -> None:
        step, attempt = self.attempts[self.current]
        self.query_one("#attempt-text", Static).update(Text(attempt_text(step, attempt)))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None and self.attempts:
            self.current = int(event.row_key.value)
            self._show_attempt()

    def action_fields(self) -> None:
        if self.detail is not None:
            self.query_one("#attempt-text", Static).update(Text(unit_text(self.detail)))

    def action_diff(self) -> None:
        if not self.attempts:
            return
        step, attempt = self.attempts[self.current]
        earlier = [a for s, a in self.attempts[: self.current] if s == step]
        if not earlier:
            self.notify("no earlier attempt at this step to compare with", severity="warning")
            return
        self.query_one("#attempt-text", Static).update(Text(answer_diff(earlier[-1], attempt)))

    def action_copy(self) -> None:
        if not self.attempts:
            return
        step, attempt = self.attempts[self.current]
        self.app.copy_to_clipboard(attempt_text(step, attempt))
        self.notify("attempt copied to the clipboard")

    def action_copy_all(self) -> None:
        if self.detail is not None:
            self.app.copy_to_clipboard(unit_text(self.detail))
            self.notify("unit copied to the clipboard")

    def action_editor(self) -> None:
        if self.detail is None:
            return
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        with tempfile.NamedTemporaryFile(
            "w", suffix=".txt", prefix=f"octopipe-{self.unit_id[:40]}-", delete=False
        ) as handle:
            handle.write(unit_text(self.detail))
            path = handle.name
        try:
            with self.app.suspend():
                subprocess.run([*shlex.split(editor), path], check=False)
        except OSError as exc:
            self.octo.fail("$EDITOR", f"{editor}: {exc.strerror or exc}")
        finally:
            os.unlink(path)

    def action_back(self) -> None:
        self.app.pop_screen()
