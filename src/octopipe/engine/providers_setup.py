"""Provider clients for a run, and the local emulator behind ``--provider fake``.

``fake`` (or ``fake:anthropic`` / ``fake:gemini``; ``fake`` alone speaks OpenAI's wire format)
starts the built-in emulator on 127.0.0.1 and points the vendor's real SDK at it, so a
rehearsal exercises the same code as a paid run, at zero cost, with no API key. The emulator
answers with schema-shaped values, or with the ``answer(request)`` function of the Python file
the user named (``run --answers FILE``; ``None`` from it falls back to the schema-shaped
value). No file is ever picked up by itself: a pipeline folder's code runs only when named.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from octopipe.core.states import BATCH_LIVE
from octopipe.engine.batch import BatchExecutor, BatchOptions
from octopipe.engine.combined import CombinedExecutor
from octopipe.engine.cost_budget import CostBudget
from octopipe.engine.realtime import RealtimeExecutor, RealtimeOptions
from octopipe.engine.runner import ExecutorFactory, LLMExecutor, RunContext
from octopipe.errors import UsageError
from octopipe.providers.base import LLMRequest, LLMResponse, ProviderSettings, RealtimeProvider
from octopipe.providers.batch_base import BatchProvider
from octopipe.providers.catalog import (
    FAKE,
    catalog,
    make_batch_provider,
    make_provider,
    resolve_api_key,
)

if TYPE_CHECKING:  # the emulator (aiohttp) is imported only when a fake run starts
    from octopipe.emulator.answers import AnswerFn

EMULATOR_URL_ENV = "OCTOPIPE_EMULATOR_URL"


def provider_names() -> tuple[str, ...]:
    """Every name ``--provider`` accepts: the catalog's providers, then ``fake:<vendor>``."""
    providers = catalog()
    return (*providers.names(), *(f"{FAKE}:{vendor}" for vendor in providers.emulated()))


def check_provider(provider: str | None) -> None:
    """Refuse a ``--provider`` name that is not a provider (``fakeXYZ`` is not ``fake``)."""
    if provider is not None and provider not in provider_names():
        raise UsageError(f"unknown provider {provider!r}; use one of {', '.join(provider_names())}")


def split_fake(provider: str | None) -> tuple[str | None, str | None]:
    """``fake:gemini`` -> (``fake``, ``gemini``); ``fake`` -> (``fake``, the first emulated
    vendor: ``openai``); other providers pass through."""
    if provider is None or (provider != FAKE and not provider.startswith(FAKE + ":")):
        return provider, None
    check_provider(provider)
    _, _, vendor = provider.partition(":")
    return FAKE, vendor or catalog().emulated()[0]


def check_answer_hook(provider: str | None) -> None:
    """An answer hook (``--answers``) needs ``--provider fake`` with the emulator in this
    process; refuse it otherwise, before its file is loaded."""
    if split_fake(provider)[0] != FAKE:
        raise UsageError(
            "--answers only applies to --provider fake (the local emulator); "
            f"this run uses {provider or 'the providers its config names'}"
        )
    remote = os.environ.get(EMULATOR_URL_ENV)
    if remote:
        raise UsageError(
            f"--answers: the emulator at {remote} ({EMULATOR_URL_ENV}) gives its own answers; "
            "start it with `octopipe emulator --answers FILE` instead"
        )


@contextmanager
def realtime_executor(
    options: RealtimeOptions, *, answers: AnswerFn | None = None, emulator_config: Any = None
) -> Iterator[ExecutorFactory]:
    """An executor factory for realtime runs (see ``llm_executor``)."""
    with llm_executor(
        "realtime", options, answers=answers, emulator_config=emulator_config
    ) as factory:
        yield factory


@contextmanager
def llm_executor(
    mode: str,
    options: RealtimeOptions,
    *,
    answers: AnswerFn | None = None,
    batch: BatchOptions | None = None,
    emulator_config: Any = None,
) -> Iterator[ExecutorFactory]:
    """An executor factory for the runner in ``mode`` (``batch`` or ``realtime``); starts and
    stops the emulator for fake runs, unless ``OCTOPIPE_EMULATOR_URL`` names a running one
    (``octopipe emulator``), whose batches then outlive this process. ``answers`` is the
    answer hook the user named (``--answers``, loaded with
    ``emulator.answers.load_answer_hook``); without it the emulator runs no user code."""
    check_provider(options.provider)
    if answers is not None:
        check_answer_hook(options.provider)
    provider, vendor = split_fake(options.provider)
    emulator: Any = None
    started = None
    if provider == FAKE:
        remote = os.environ.get(EMULATOR_URL_ENV)
        if remote:
            emulator = RemoteEmulator(remote)
        else:
            from octopipe.emulator import EmulatorConfig, EmulatorThread

            config = emulator_config or EmulatorConfig()
            if answers is not None:
                config = dataclasses.replace(config, answer_fn=answers)
            emulator = started = EmulatorThread(config).start()
    try:
        yield _factory(mode, options, batch or BatchOptions(), provider, vendor, emulator)
    finally:
        if started is not None:
            started.stop()


class RemoteEmulator:
    """An emulator started elsewhere (``octopipe emulator``), known by its root URL."""

    def __init__(self, root_url: str) -> None:
        self.root_url = root_url.rstrip("/")

    def base_url_for(self, vendor: str) -> str:
        from octopipe.emulator.server import MOUNTS, SDK_SUFFIX, vendor_name

        name = vendor_name(vendor)
        return self.root_url + MOUNTS[name] + SDK_SUFFIX[name]


def _factory(
    mode: str,
    options: RealtimeOptions,
    batch: BatchOptions,
    provider: str | None,
    vendor: str | None,
    emulator: Any,
) -> ExecutorFactory:
    run_options = options
    if provider == FAKE:
        run_options = RealtimeOptions(**{**options.__dict__, "provider": FAKE})
    batch_options = dataclasses.replace(
        batch,
        provider=run_options.provider,
        model=options.model,
        timeout_s=options.timeout_s,
        max_attempts=options.max_attempts,
        price_as=options.price_as,
    )

    def make(ctx: RunContext) -> LLMExecutor:
        api = ctx.compiled.pipeline.config.api
        base_url = options.base_url or api.base_url  # --base-url (kept with the run) wins
        clients: dict[str, RealtimeProvider] = {}

        def client_for(name: str) -> RealtimeProvider:
            if name not in clients:
                clients[name] = make_provider(
                    _settings(name, vendor, emulator, base_url, api.request_timeout_seconds)
                )
            return clients[name]

        def batch_client_for(name: str) -> BatchProvider:
            settings = _settings(name, vendor, emulator, base_url, api.request_timeout_seconds)
            return make_batch_provider(settings)

        budget = CostBudget.of_run(ctx, options.max_cost_usd)  # one cap for every executor
        if mode == "batch":
            combined = CombinedExecutor(budget)
            fallen_back: list[RealtimeExecutor] = []

            def fall_back(step_index: int) -> None:
                if not fallen_back:
                    realtime = RealtimeExecutor(
                        ctx, run_options, client_for, only_steps=set(), budget=budget
                    )
                    fallen_back.append(realtime)
                    combined.add(realtime)
                steps = fallen_back[0].only_steps
                assert steps is not None
                steps.add(step_index)

            combined.add(
                BatchExecutor(
                    ctx, batch_options, batch_client_for, fallback=fall_back, budget=budget
                )
            )
            return combined
        realtime = RealtimeExecutor(ctx, run_options, client_for, budget=budget)
        if realtime.flex and realtime.flex_fallback == "batch":
            return _with_batch_fallback(ctx, realtime, batch_options, batch_client_for, budget)
        if not ctx.ledger.batches(*BATCH_LIVE):
            return realtime
        # Switched from batch: batches already at the provider are still followed and
        # collected; everything new runs in realtime.
        follow = dataclasses.replace(batch_options, submit=False)
        following = BatchExecutor(ctx, follow, batch_client_for, budget=budget)
        return CombinedExecutor(budget, (following, realtime))

    return make


def _with_batch_fallback(
    ctx: RunContext,
    realtime: RealtimeExecutor,
    batch_options: BatchOptions,
    batch_client_for: Callable[[str], BatchProvider],
    budget: CostBudget,
) -> CombinedExecutor:
    """A flex run with ``--flex-fallback batch``: realtime at flex, plus one batch executor
    that submits only the steps realtime handed over (``RealtimeExecutor.to_batch``) and
    follows the batches already open (a resumed run: their steps stay in batch; any other
    step starts at flex again)."""
    batch = BatchExecutor(ctx, batch_options, batch_client_for, budget=budget)
    handed = {row.step_idx for row in ctx.ledger.batches(*BATCH_LIVE)}
    batch.paused_steps = set(batch.routes) - handed
    combined = CombinedExecutor(budget, (batch, realtime))

    def to_batch(step_index: int) -> None:
        batch.paused_steps.discard(step_index)

    realtime.to_batch = to_batch
    if realtime.only_steps is None and handed:
        realtime.only_steps = set(batch.routes) - handed
    return combined


def _settings(
    name: str, vendor: str | None, emulator: Any, base_url: str | None, timeout_s: float
) -> ProviderSettings:
    if name == FAKE:
        if emulator is None:
            raise UsageError(
                "this run has batches at the emulator (--provider fake): resume it with "
                f"--provider fake, with {EMULATOR_URL_ENV} naming the emulator that has them"
            )
        target = vendor or catalog().emulated()[0]
        return ProviderSettings(target, "emulated-key", emulator.base_url_for(target), timeout_s)
    url = base_url if catalog().spec(name).needs_base_url else None
    return ProviderSettings(name, resolve_api_key(name), url, timeout_s)


def one_call(provider: str, request: LLMRequest, timeout_s: float = 120.0) -> LLMResponse:
    """One realtime call outside any run (troubleshoot): through the provider catalog, the
    emulator started in this process for ``fake`` (no key, nothing billed)."""
    import asyncio

    check_provider(provider)
    name, vendor = split_fake(provider)
    assert name is not None

    async def call(emulator: Any) -> LLMResponse:
        client = make_provider(_settings(name, vendor, emulator, None, timeout_s))
        try:
            return await client.complete(request)
        finally:
            await client.aclose()

    if name != FAKE:
        return asyncio.run(call(None))
    remote = os.environ.get(EMULATOR_URL_ENV)
    if remote:
        return asyncio.run(call(RemoteEmulator(remote)))
    from octopipe.emulator import EmulatorConfig, EmulatorThread

    started = EmulatorThread(EmulatorConfig()).start()
    try:
        return asyncio.run(call(started))
    finally:
        started.stop()


def configured_providers(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The catalog's providers whose API key is set (none of them needs a base URL)."""
    env = os.environ if env is None else env
    return tuple(
        spec.name
        for spec in catalog().builtins()
        if spec.key_variables and any(env.get(v) for v in spec.key_variables)
    )
