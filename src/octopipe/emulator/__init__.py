"""A local emulator of the OpenAI, Anthropic and Gemini HTTP APIs (realtime and batch).

An application of its own (``octopipe emulator``, ``python -m octopipe.emulator``): it imports
only ``octopipe.core`` and ``octopipe.errors``, and only the engine's provider setup
(``engine/providers_setup.py``) and the CLI import it (``tests/arch``).

It lets the official SDKs run their real code paths over loopback HTTP -- the SDKs use
``httpx2``, which httpx mocking libraries do not intercept -- with configurable latency,
per-(vendor, model) rate limits, injected faults and deterministic, schema-shaped answers.

Layout: ``server`` (aiohttp app and the shared request pipeline), ``runner`` (in-loop and
threaded runners), ``vendors/`` (one wire format per vendor), ``answers`` and
``core/schema_values`` (what to answer), ``faults`` (fault plan, rate limiter, counters),
``config`` and ``cli``. The batch APIs live in ``batches`` (job store and lifecycle),
``batch_faults`` (their failure modes) and ``vendors/*_batch.py`` / ``vendors/gemini_files.py``.

Usage::

    async with run_emulator(EmulatorConfig(latency_ms=20)) as emu:
        client = AsyncOpenAI(base_url=emu.base_url_for("openai"), api_key="x")
"""

from octopipe.core.schema_values import schema_value
from octopipe.emulator.answers import (
    AnswerFn,
    EmulatorRequest,
    default_answer,
)
from octopipe.emulator.cli import main
from octopipe.emulator.config import FAULT_KINDS, EmulatorConfig
from octopipe.emulator.runner import Emulator, EmulatorThread, run_emulator

__all__ = [
    "FAULT_KINDS",
    "AnswerFn",
    "Emulator",
    "EmulatorConfig",
    "EmulatorRequest",
    "EmulatorThread",
    "default_answer",
    "main",
    "run_emulator",
    "schema_value",
]
