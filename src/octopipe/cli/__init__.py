"""The ``octopipe`` command line: parse arguments, call the core or engine, render the result.

Only this package exits the process. Errors from the tree in ``octopipe.errors`` become a
message on stderr and the exit code of their category. Commands are imported when they run
(``LazyGroup``), so ``octopipe status`` does not pay for parsing pipelines or provider SDKs.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import click
from dotenv import load_dotenv

from octopipe import __version__
from octopipe.cli.output import run_guarded

# command name -> (module under octopipe.cli, or a full module path, attribute). ``tui`` lives
# in the tui package, named here by string so the CLI never imports it (nor Textual) itself.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("validate_cmd", "validate"),
    "units": ("inspect_cmds", "units"),
    "try": ("inspect_cmds", "try_unit"),
    "init": ("run_cmds", "init"),
    "run": ("run_cmds", "run"),
    "status": ("status_cmds", "status"),
    "ps": ("status_cmds", "ps"),
    **{
        name: ("admin_cmds", name)
        for name in (
            "info",
            "verify",
            "repair",
            "retry",
            "revalidate",
            "export",
            "pause",
            "kill",
            "rename",
            "archive",
            "unarchive",
        )
    },
    "post": ("post_cmd", "post"),
    "analyze": ("post_cmd", "analyze"),
    "report": ("report_cmds", "report"),
    "compare": ("report_cmds", "compare"),
    "logs": ("logs_cmd", "logs"),
    "watch": ("logs_cmd", "watch"),
    "models": ("models_cmd", "models"),
    "emulator": ("emulator_cmd", "emulator"),
    "tui": ("octopipe.tui.command", "tui"),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        name = target[0] if "." in target[0] else f"octopipe.cli.{target[0]}"
        module = importlib.import_module(name)
        command = getattr(module, target[1])
        assert isinstance(command, click.Command)
        return command


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", "-V", prog_name="octopipe")
def cli() -> None:
    """Run multi-step LLM pipelines over many units, in batch or realtime, with a durable
    ledger. Reads Octobatch pipeline folders unchanged."""


def load_env_file() -> None:
    """Read ``.env`` from the working folder, and from nowhere else: not its parents, not the
    package's folder. Variables already set win; values stay in this process's environment."""
    with contextlib.suppress(OSError):  # no working folder (deleted): no .env either
        env_file = Path.cwd() / ".env"
        if env_file.is_file():
            load_dotenv(env_file, override=False)


GC_THRESHOLDS = (50_000, 20, 100)
"""The cyclic garbage collector's thresholds for a command's process (Python's default is
``(700, 10, 10)``): see `tune_gc`."""


def tune_gc() -> None:
    """Make the cyclic garbage collector run about 70 times less often. A command allocates
    millions of short-lived acyclic objects (records, rows, step results), which reference
    counting frees at once; at the default thresholds the collector still scanned the live
    ones every 700 allocations, about 7 % of a local run's time. Cycles are still collected;
    the memory they hold meanwhile is bounded by the allocations between two passes."""
    gc.set_threshold(*GC_THRESHOLDS)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point. API keys may come from a ``.env`` file in the working folder; they
    are read into this process's environment only, never written anywhere."""
    tune_gc()
    load_env_file()
    code = run_guarded(cli, list(argv) if argv is not None else None)
    if argv is None:
        # The command is done and its exit code decided: a Ctrl+C landing now (a second one,
        # pressed while a paused run was shutting down) must not turn it into a death by signal.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)
