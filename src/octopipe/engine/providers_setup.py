"""Provider clients for a run, and the local emulator behind ``--provider fake``.

``fake`` (or ``fake:anthropic`` / ``fake:gemini``; ``fake`` alone speaks OpenAI's wire format)
starts the built-in emulator on 127.0.0.1 and points the vendor's real SDK at it, so a
rehearsal exercises the same code as a paid run, at zero cost, with no API key. If the
pipeline folder has an ``emulator_answers.py`` defining ``answer(request)``, its answers are
used (return ``None`` to fall back to a schema-shaped default); it is only ever loaded for
``fake`` runs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from octopipe.engine.realtime import RealtimeExecutor, RealtimeOptions
from octopipe.engine.runner import ExecutorFactory, RunContext
from octopipe.errors import UsageError
from octopipe.providers.base import (
    ProviderSettings,
    RealtimeProvider,
    make_provider,
    resolve_api_key,
)

FAKE = "fake"
VENDORS = ("openai", "anthropic", "gemini")
ANSWERS_FILE = "emulator_answers.py"


def split_fake(provider: str | None) -> tuple[str | None, str | None]:
    """``fake:gemini`` -> (``fake``, ``gemini``); other providers pass through."""
    if provider is None or not provider.startswith(FAKE):
        return provider, None
    _, _, vendor = provider.partition(":")
    vendor = vendor or "openai"
    if vendor not in VENDORS:
        raise UsageError(f"unknown emulated vendor {vendor!r}; use one of {', '.join(VENDORS)}")
    return FAKE, vendor


def load_answer_hook(config_dir: Path) -> Callable[[Any], Any] | None:
    path = config_dir / ANSWERS_FILE
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("octopipe_emulator_answers", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    hook = getattr(module, "answer", None)
    return hook if callable(hook) else None


@contextmanager
def realtime_executor(
    options: RealtimeOptions, config_dir: Path, *, emulator_config: Any = None
) -> Iterator[ExecutorFactory]:
    """An executor factory for the runner; starts and stops the emulator for fake runs."""
    provider, vendor = split_fake(options.provider)
    emulator = None
    if provider == FAKE:
        from octopipe.providers.emulator import EmulatorConfig, EmulatorThread, default_answer

        hook = load_answer_hook(config_dir)
        config = emulator_config or EmulatorConfig()
        if hook is not None and config.answer_fn is None:
            config = _with_answers(config, hook, default_answer)
        emulator = EmulatorThread(config).start()
    try:
        yield _factory(options, provider, vendor, emulator)
    finally:
        if emulator is not None:
            emulator.stop()


def _with_answers(config: Any, hook: Callable[[Any], Any], fallback: Callable[[Any], Any]) -> Any:
    import dataclasses

    def answer(request: Any) -> Any:
        value = hook(request)
        return fallback(request) if value is None else value

    return dataclasses.replace(config, answer_fn=answer)


def _factory(
    options: RealtimeOptions, provider: str | None, vendor: str | None, emulator: Any
) -> ExecutorFactory:
    run_options = options
    if provider == FAKE:
        run_options = RealtimeOptions(**{**options.__dict__, "provider": FAKE})

    def make(ctx: RunContext) -> RealtimeExecutor:
        clients: dict[str, RealtimeProvider] = {}
        api = ctx.compiled.pipeline.config.api

        def client_for(name: str) -> RealtimeProvider:
            if name not in clients:
                clients[name] = _client(
                    name, vendor, emulator, api.base_url, api.request_timeout_seconds
                )
            return clients[name]

        return RealtimeExecutor(ctx, run_options, client_for)

    return make


def _client(
    name: str, vendor: str | None, emulator: Any, base_url: str | None, timeout_s: float
) -> RealtimeProvider:
    if name == FAKE:
        target = vendor or "openai"
        settings = ProviderSettings(
            target, "emulated-key", emulator.base_url_for(target), timeout_s
        )
        return make_provider(settings)
    url = base_url if name == "openai-compatible" else None
    return make_provider(ProviderSettings(name, resolve_api_key(name), url, timeout_s))
