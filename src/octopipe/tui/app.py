"""The Textual app: built by one factory (``build_app``) used by the CLI, ``--serve`` and the
tests, with the engine port (queries and control) injected.

Rules kept here for every screen: blocking work (ledger reads, commands) runs in thread
workers through :meth:`OctopipeApp.background`; widgets change only on the UI thread (the
worker hands its result back with ``call_from_thread``); an error becomes a notification and a
line in the log (``OCTOPIPE_TUI_LOG`` names a file), never a silent ``pass``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from textual.app import App
from textual.binding import Binding

from octopipe import __version__
from octopipe.errors import OctopipeError
from octopipe.tui.palette import OctopipeCommands
from octopipe.tui.port import RunControl, RunQueries, environment_note

logger = logging.getLogger("octopipe.tui")
R = TypeVar("R")


class OctopipeApp(App[None]):
    """Every run under one runs folder: dashboard, run detail, unit inspector, actions."""

    CSS_PATH = "app.tcss"
    TITLE = "octopipe"
    SUB_TITLE = f"v{__version__}"
    COMMANDS = App.COMMANDS | {OctopipeCommands}
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(
        self,
        queries: RunQueries,
        control: RunControl,
        *,
        read_only: bool = False,
        start_run: str | None = None,
        refresh_s: float = 2.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__()
        self._clock = clock or (lambda: datetime.now(UTC))
        self.queries = queries
        self.control = control
        self.read_only = read_only or control.read_only
        self.start_run = start_run
        self.refresh_s = refresh_s
        if self.read_only:
            self.sub_title = f"v{__version__} · read-only"

    def now(self) -> datetime:
        """The time durations and ETAs are counted to (a fixed clock in snapshot tests)."""
        return self._clock()

    def on_mount(self) -> None:
        from octopipe.tui.screens.dashboard import DashboardScreen

        self.push_screen(DashboardScreen())
        if self.start_run:
            from octopipe.tui.screens.run_detail import RunDetailScreen

            self.push_screen(RunDetailScreen(self.start_run))
        note = environment_note()
        if note:
            self.notify(note, severity="warning", timeout=6)

    # --- work off the UI thread ---------------------------------------------------------------

    def background(
        self,
        fn: Callable[[], R],
        done: Callable[[R], Any] | None = None,
        *,
        what: str,
        group: str = "default",
        exclusive: bool = False,
    ) -> None:
        """Run ``fn`` in a thread worker; ``done(result)`` then runs on the UI thread. A
        failure is notified (naming ``what``) and logged."""

        def job() -> None:
            try:
                result = fn()
            except OctopipeError as exc:
                logger.warning("%s: %s", what, exc.message)
                self.call_from_thread(self.fail, what, exc.message)
                return
            except Exception as exc:  # a bug: shown and logged with its traceback
                logger.exception("%s failed", what)
                self.call_from_thread(self.fail, what, f"{type(exc).__name__}: {exc}")
                return
            if done is not None:
                self.call_from_thread(done, result)

        self.run_worker(job, thread=True, group=group, exclusive=exclusive, exit_on_error=False)

    def fail(self, what: str, message: str) -> None:
        self.notify(f"{what}: {message}", title="octopipe", severity="error", timeout=10)

    def action_help(self) -> None:
        from octopipe.tui.screens.help import HelpScreen

        self.push_screen(HelpScreen(self.screen))


def build_app(
    queries: RunQueries,
    control: RunControl,
    *,
    read_only: bool = False,
    start_run: str | None = None,
    refresh_s: float = 2.0,
    clock: Callable[[], datetime] | None = None,
) -> OctopipeApp:
    """The one factory of the app (CLI, ``--serve`` and tests)."""
    log_file = os.environ.get("OCTOPIPE_TUI_LOG")
    if log_file and not logger.handlers:
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return OctopipeApp(
        queries,
        control,
        read_only=read_only,
        start_run=start_run,
        refresh_s=refresh_s,
        clock=clock,
    )
