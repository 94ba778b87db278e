"""Shared output helpers for commands: JSON printing and the error -> exit code boundary."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console

from octopipe.errors import ConfigError, OctopipeError

# Piped output (scripts, logs, CI) gets a wide page rather than rich's 80-column default, so
# tables are not truncated; a terminal keeps its own width.
_PIPED_WIDTH = None if sys.stdout.isatty() else 160
console = Console(highlight=False, soft_wrap=True, width=_PIPED_WIDTH)
err_console = Console(
    stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 160
)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def run_guarded(command: click.Command, argv: list[str] | None) -> int:
    """Run a click command; map octopipe errors to a message and their exit code."""
    try:
        result = command.main(args=argv, prog_name="octopipe", standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted")
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except ConfigError as exc:
        for problem in exc.problems:
            err_console.print(problem.render(), markup=False)
        return exc.exit_code
    except OctopipeError as exc:
        err_console.print(f"error: {exc.message}", markup=False)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


def fail_json_or_text(as_json: bool, exc: ConfigError) -> int:
    if as_json:
        print_json({"ok": False, "problems": [p.to_dict() for p in exc.problems]})
    else:
        for problem in exc.problems:
            err_console.print(problem.render(), markup=False)
    sys.stderr.flush()
    return exc.exit_code
