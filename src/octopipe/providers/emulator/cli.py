"""Command-line entry point: ``python -m octopipe.providers.emulator`` (and, later,
``octopipe emulator``).

Guarantees: binds to 127.0.0.1 unless ``--host`` says otherwise; prints
``octopipe emulator listening on http://HOST:PORT`` as its first line (so a parent process
started with ``--port 0`` can read the port), then one base URL per vendor; runs until
SIGINT/SIGTERM and exits 0. Bad options exit 2 with argparse's message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from octopipe.providers.emulator.config import FAULT_KINDS, EmulatorConfig, parse_fault
from octopipe.providers.emulator.runner import Emulator
from octopipe.providers.emulator.vendors import VENDORS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="octopipe emulator",
        description="Local emulator of the OpenAI, Anthropic and Gemini HTTP APIs.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    add("--port", type=int, default=8765, help="port to bind; 0 picks a free one")
    add("--latency-ms", type=float, default=0.0, help="delay before each answer")
    add("--jitter-ms", type=float, default=0.0, help="random extra delay, uniform in [0, N]")
    add("--rpm", type=int, default=None, help="requests per minute per (vendor, model)")
    add("--rpm-window-s", type=float, default=60.0, help="length of the rate-limit window")
    add(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=P",
        help=f"inject a fault with probability P (repeatable); KIND: {' '.join(FAULT_KINDS)}",
    )
    add(
        "--schedule",
        default="",
        metavar="K1,K2,...",
        help="faults for the first requests, in order ('ok' for none)",
    )
    add("--retry-after-s", type=float, default=1.0, help="Retry-After of injected 429s")
    add("--cached-input-tokens", type=int, default=0, help="cached prompt tokens to report")
    add("--seed", type=int, default=0, help="seed for fault draws and jitter")
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    faults = dict(parse_fault(text) for text in args.fault)
    schedule = tuple(k.strip() for k in args.schedule.split(",") if k.strip())
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        rpm=args.rpm,
        rpm_window_s=args.rpm_window_s,
        faults=faults,
        fault_schedule=schedule,
        retry_after_s=args.retry_after_s,
        cached_input_tokens=args.cached_input_tokens,
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    asyncio.run(_serve(config))
    return 0


async def _serve(config: EmulatorConfig) -> None:
    emulator = Emulator(config)
    await emulator.start()
    print(f"octopipe emulator listening on {emulator.root_url}", flush=True)
    for vendor in (*VENDORS, "openai-compatible"):
        print(f"  {vendor:<18} base_url={emulator.base_url_for(vendor)}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await emulator.stop()


if __name__ == "__main__":
    sys.exit(main())
