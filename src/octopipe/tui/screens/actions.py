"""The actions a user takes on a run, shared by the dashboard and the run detail.

Each action asks for confirmation where it costs money or destroys something, shows the
equivalent CLI command, then runs through the port in a worker; the outcome is a notification
(and the screen refreshes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from octopipe.tui.port import ActionResult, cli
from octopipe.tui.screens.base import OctoScreen
from octopipe.tui.screens.modals import ChoiceScreen, ConfirmScreen, PromptScreen

if TYPE_CHECKING:
    from octopipe.engine.browse import DashboardRow

RESUMABLE = ("paused", "detached", "pending")
RETRYABLE = ("complete_with_failures", "failed")
ARCHIVABLE = ("complete", "complete_with_failures", "failed", "killed")


class RunActions(OctoScreen):
    """A screen that knows its current run (``current_row``) and acts on it."""

    def current_row(self) -> DashboardRow | None:
        raise NotImplementedError

    def refresh_now(self) -> None:
        raise NotImplementedError

    # --- plumbing ------------------------------------------------------------------------

    def _row_or_say(self) -> DashboardRow | None:
        row = self.current_row()
        if row is None:
            self.notify("no run selected", severity="warning")
        return row

    def _refused_read_only(self, what: str) -> bool:
        if self.octo.read_only:
            self.notify(f"read-only mode: {what} is not allowed", severity="warning")
            return True
        return False

    def do_action(self, what: str, fn: Callable[[], ActionResult]) -> None:
        def done(result: ActionResult) -> None:
            self.notify(f"{result.message}\nCLI: {result.command}", title=what, timeout=8)
            self.refresh_now()

        self.octo.background(fn, done, what=what, group="actions")

    def confirm_then(
        self, title: str, body: str, command: str, what: str, fn: Callable[[], ActionResult]
    ) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.do_action(what, fn)

        self.app.push_screen(ConfirmScreen(title, body, command), answered)

    def _cli(self, *words: object) -> str:
        return cli(self.octo.queries.runs_dir, *words)

    # --- the actions ---------------------------------------------------------------------

    def action_pause(self) -> None:
        row = self._row_or_say()
        if row is None or self._refused_read_only("pause"):
            return
        name = row.name
        self.do_action("pause", lambda: self.octo.control.pause(name))

    def action_kill(self) -> None:
        row = self._row_or_say()
        if row is None or self._refused_read_only("kill"):
            return
        name = row.name
        self.confirm_then(
            f"Kill run {name}?",
            "The run stops for good: a killed run cannot be resumed or retried.",
            self._cli("kill", name, "--yes"),
            "kill",
            lambda: self.octo.control.kill(name),
        )

    def action_resume(self) -> None:
        """R: resume a paused/detached/pending run; on a finished run with failures, retry
        the failed units (only those) and resume."""
        row = self._row_or_say()
        if row is None or self._refused_read_only("resume"):
            return
        name, status = row.name, row.view.status
        if status == "running":
            self.notify(f"{name} is running (pid {row.view.runner_pid})", severity="warning")
        elif status in RESUMABLE:
            self.confirm_then(
                f"Resume run {name}?",
                "A runner starts in the background and may spend money on LLM calls.",
                self._cli("run", name, "--detach"),
                "resume",
                lambda: self.octo.control.resume(name),
            )
        elif status in RETRYABLE:
            self.retry_failures(name, None, None, f"{row.view.failed:,} failed unit(s)")
        else:
            self.notify(f"{name} is {status.replace('_', ' ')}: nothing to resume", timeout=5)

    def retry_failures(
        self, name: str, step: tuple[int, str] | None, stage: str | None, what: str
    ) -> None:
        if self._refused_read_only("retry"):
            return
        words: list[object] = ["retry", name]
        if step is not None:
            words += ["--step", step[1]]
        if stage is not None:
            words += ["--stage", stage]
        command = f"{self._cli(*words)} && {self._cli('run', name, '--detach')}"

        def retry_and_resume() -> ActionResult:
            retried = self.octo.control.retry(name, step=step, stage=stage)
            resumed = self.octo.control.resume(name)
            return ActionResult(f"{retried.message}; {resumed.message}", command)

        self.confirm_then(
            f"Retry {what} of {name}?",
            "Only those units are requeued (with a fresh retry budget); every earlier attempt "
            "stays in the ledger. A runner then starts in the background and may spend money.",
            command,
            "retry",
            retry_and_resume,
        )

    def action_archive(self) -> None:
        row = self._row_or_say()
        if row is None or self._refused_read_only("archive"):
            return
        name = row.name
        if row.view.archived:
            self.do_action("unarchive", lambda: self.octo.control.unarchive(name))
            return
        if row.view.status not in ARCHIVABLE:
            self.notify(
                f"{name} is {row.view.status.replace('_', ' ')}: only finished runs can be "
                "archived (kill it first to give it up)",
                severity="warning",
            )
            return
        self.confirm_then(
            f"Archive run {name}?",
            "The run folder moves to _archive/ in the runs folder (H shows archived runs; X "
            "there moves it back).",
            self._cli("archive", name),
            "archive",
            lambda: self.octo.control.archive(name),
        )

    def action_rename(self) -> None:
        row = self._row_or_say()
        if row is None or self._refused_read_only("rename"):
            return
        name = row.name

        def got(value: str | None) -> None:
            if value:
                self.do_action("rename", lambda: self.octo.control.rename(name, value))

        self.app.push_screen(PromptScreen(f"Display name of {name}", row.view.display_name), got)

    def action_mode(self) -> None:
        row = self._row_or_say()
        if row is None or self._refused_read_only("mode switch"):
            return
        name, mode = row.name, row.view.mode
        if row.view.live:
            self.notify(
                f"{name} is running: pause it (P) before switching mode", severity="warning"
            )
            return
        other = "realtime" if mode == "batch" else "batch"

        def picked(value: str | None) -> None:
            if value in ("batch", "realtime") and value != mode:
                self.do_action("mode", lambda: self.octo.control.switch_mode(name, value))

        self.app.push_screen(ChoiceScreen(f"{name} is in {mode} mode; switch to", [other]), picked)

    def action_revalidate(self) -> None:
        row = self._row_or_say()
        if row is None or self._refused_read_only("revalidate"):
            return
        name = row.name
        self.do_action("revalidate", lambda: self.octo.control.revalidate(name))

    def action_export(self) -> None:
        row = self._row_or_say()
        if row is None or self._refused_read_only("export"):
            return
        name = row.name
        self.do_action("export", lambda: self.octo.control.export(name))
