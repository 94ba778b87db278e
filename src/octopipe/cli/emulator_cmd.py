"""``octopipe emulator``: serve the local emulator of the OpenAI, Anthropic and Gemini APIs."""

from __future__ import annotations

import click


@click.command(
    context_settings={
        "ignore_unknown_options": True,
        "allow_extra_args": True,
        "help_option_names": [],
    }
)
@click.pass_context
def emulator(ctx: click.Context) -> int:
    """Serve the provider emulator on 127.0.0.1 for your own experiments (no key, no cost).

    Options (see `octopipe emulator --help`): --port N, --latency-ms N, --rpm N,
    --fault 500=0.1 (repeatable), --schedule 500,ok,..., --answers FILE (a Python file whose
    answer(request) gives the answers; its code runs in the emulator). Point an SDK at the
    printed URL.
    """
    from octopipe.emulator.cli import main as emulator_main

    return int(emulator_main(list(ctx.args)) or 0)
