"""Command-line entry point: ``python -m octopipe.emulator`` (and, later,
``octopipe emulator``).

Guarantees: binds to 127.0.0.1 unless ``--host`` says otherwise; prints
``octopipe emulator listening on http://HOST:PORT`` as its first line (so a parent process
started with ``--port 0`` can read the port), then one base URL per vendor; runs until
SIGINT/SIGTERM and exits 0. Bad options exit 2 with argparse's message. Its answers are
schema-shaped unless ``--answers FILE`` names a Python file whose ``answer(request)`` gives them
(that file's code then runs in the emulator's process); no file is ever picked up by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from octopipe.emulator.answers import AnswerFn, load_answer_hook
from octopipe.emulator.config import (
    FAULT_KINDS,
    LINE_FAULT_KINDS,
    SUBMIT_FAULT_KINDS,
    TRUNCATE_STYLES,
    EmulatorConfig,
    parse_fault,
)
from octopipe.emulator.runner import Emulator
from octopipe.emulator.vendors import VENDORS
from octopipe.errors import AnswerHookError


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
    add(
        "--account-rpm",
        type=int,
        default=None,
        help="account requests per minute per vendor, "
        "stated in rate-limit headers, not told to clients",
    )
    add(
        "--account-tpm",
        type=int,
        default=None,
        help="account tokens per minute per vendor, stated in rate-limit headers",
    )
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
    add("--cache-write-tokens", type=int, default=0, help="cache-write prompt tokens to report")
    add(
        "--flex-unavailable-rate",
        type=float,
        default=0.0,
        help='share of flex requests answered 429 "resource unavailable" (0..1)',
    )
    add("--seed", type=int, default=0, help="seed for fault draws and jitter")
    add(
        "--answers",
        type=Path,
        default=None,
        metavar="FILE",
        help="a Python file defining answer(request) (None falls back to the schema-shaped "
        "answer); its code runs in this process",
    )
    _add_batch_options(parser)
    return parser


def _add_batch_options(parser: argparse.ArgumentParser) -> None:
    batch = parser.add_argument_group("batch APIs")
    add = batch.add_argument
    add("--batch-delay-s", type=float, default=0.0, help="seconds a batch job runs before it ends")
    add(
        "--batch-expire-s",
        type=float,
        default=None,
        help="a job still running this long after creation expires (partial results)",
    )
    add(
        "--batch-line-fault",
        action="append",
        default=[],
        metavar="KIND=P",
        help=f"per-request fault inside batches (repeatable); KIND: {' '.join(LINE_FAULT_KINDS)}",
    )
    add(
        "--batch-line-schedule",
        default="",
        metavar="K1,K2,...",
        help="line faults for the first batch requests across jobs, in order ('ok' for none)",
    )
    add(
        "--batch-fail-jobs",
        default="",
        metavar="N1,N2,...",
        help="ordinals (1 = first created) of the batch jobs that fail as a whole",
    )
    add(
        "--batch-truncate-jobs",
        default="",
        metavar="N1,N2,...",
        help="ordinals of the batch jobs whose result downloads are cut in the last line",
    )
    add(
        "--batch-truncate-downloads",
        type=int,
        default=1,
        metavar="N",
        help="how many downloads of those jobs' results are cut before one is whole",
    )
    add(
        "--batch-truncate-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="probability that any results download is cut",
    )
    add(
        "--batch-truncate-style",
        choices=TRUNCATE_STYLES,
        default="clean",
        help="clean: the body ends early; abort: the connection closes before Content-Length",
    )
    add(
        "--batch-submit-faults",
        default="",
        metavar="K1,K2,...",
        help=f"faults for the next batch-create calls ('ok' for none); KIND: "
        f"{' '.join(SUBMIT_FAULT_KINDS)}",
    )


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    faults = dict(parse_fault(text) for text in args.fault)
    line_faults = dict(_parse_line_fault(text) for text in args.batch_line_fault)
    return EmulatorConfig(
        answer_fn=_answers(args.answers),
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        rpm=args.rpm,
        rpm_window_s=args.rpm_window_s,
        account_rpm=args.account_rpm,
        account_tpm=args.account_tpm,
        faults=faults,
        fault_schedule=_csv(args.schedule),
        retry_after_s=args.retry_after_s,
        cached_input_tokens=args.cached_input_tokens,
        cache_write_tokens=args.cache_write_tokens,
        flex_unavailable_rate=args.flex_unavailable_rate,
        seed=args.seed,
        batch_delay_s=args.batch_delay_s,
        batch_expire_s=args.batch_expire_s,
        batch_line_faults=line_faults,
        batch_line_fault_schedule=_csv(args.batch_line_schedule),
        batch_fail_schedule=_ordinals(args.batch_fail_jobs),
        batch_truncate_schedule=_ordinals(args.batch_truncate_jobs),
        batch_truncate_downloads=args.batch_truncate_downloads,
        batch_truncate_rate=args.batch_truncate_rate,
        batch_truncate_style=args.batch_truncate_style,
        batch_submit_faults=_csv(args.batch_submit_faults),
    )


def _answers(path: Path | None) -> AnswerFn | None:
    if path is None:
        return None
    if not path.is_file():
        raise ValueError(f"--answers {path}: no such file")
    try:
        return load_answer_hook(path.resolve())
    except AnswerHookError as exc:
        raise ValueError(f"--answers {exc.message}") from exc


def _csv(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _ordinals(text: str) -> tuple[bool, ...]:
    """``"2,4"`` -> ``(False, True, False, True)``: flags by 1-based job ordinal."""
    try:
        chosen = {int(item) for item in _csv(text)}
    except ValueError:
        raise ValueError(f"bad job list {text!r}: expected ordinals such as 1,3") from None
    if any(n < 1 for n in chosen):
        raise ValueError(f"bad job list {text!r}: ordinals start at 1")
    return tuple(n in chosen for n in range(1, max(chosen, default=0) + 1))


def _parse_line_fault(text: str) -> tuple[str, float]:
    """``"dropped=0.1"`` -> ``("dropped", 0.1)``; a bare kind means probability 1."""
    kind, _, probability = text.partition("=")
    try:
        return kind.strip(), float(probability) if probability else 1.0
    except ValueError:
        raise ValueError(f"bad batch line fault {text!r}: expected KIND=PROBABILITY") from None


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
