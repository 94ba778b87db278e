"""The ``octopipe`` command line: parse arguments, call the core or engine, render the result.

Only this package exits the process. Errors from the tree in ``octopipe.errors`` become a
message on stderr and the exit code of their category.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click
from dotenv import load_dotenv

from octopipe import __version__
from octopipe.cli import emulator_cmd, inspect_cmds, run_cmds, validate_cmd
from octopipe.cli.output import run_guarded


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="octopipe")
def cli() -> None:
    """Run multi-step LLM pipelines over many units, in batch or realtime, with a durable
    ledger. Reads Octobatch pipeline folders unchanged."""


cli.add_command(validate_cmd.validate)
cli.add_command(inspect_cmds.units)
cli.add_command(inspect_cmds.try_unit)
for command in (run_cmds.init, run_cmds.run, run_cmds.status, run_cmds.ps, emulator_cmd.emulator):
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point. API keys may come from a ``.env`` file in the working folder; they
    are read into this process's environment only, never written anywhere."""
    load_dotenv(override=False)
    sys.exit(run_guarded(cli, list(argv) if argv is not None else None))


from octopipe.cli import models_cmd  # noqa: E402  (appended last to keep merges simple)

cli.add_command(models_cmd.models)

from octopipe.cli import admin_cmds  # noqa: E402  (appended last to keep merges simple)

for command in admin_cmds.COMMANDS:
    cli.add_command(command)
