"""Ways to run the emulator: in the caller's event loop, or in a background thread.

Guarantees:

- ``run_emulator(config)`` starts a server on a free loopback port (unless ``config.port`` is
  set) and stops it on exit, releasing hung requests first.
- ``EmulatorThread(config).start()`` does the same in a daemon thread with its own event
  loop, for synchronous code; ``start()`` returns only once the port is bound (or raises).
- Both expose ``base_url_for(vendor)``, ``stats()``, ``inject(*faults)`` and ``requests``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

from aiohttp import web

from octopipe.emulator.answers import EmulatorRequest
from octopipe.emulator.config import EmulatorConfig
from octopipe.emulator.server import MOUNTS, SDK_SUFFIX, EmulatorCore, vendor_name

START_TIMEOUT_S = 10.0


class Emulator:
    """A running (or startable) emulator in the current event loop."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.core = EmulatorCore(self.config)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self.core.build_app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        self.core.release_hung_requests()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def root_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the emulator is not running")
        return f"http://{self.config.host}:{self.port}"

    def base_url_for(self, vendor: str) -> str:
        """The base URL to give the vendor's SDK (``openai-compatible`` shares ``openai``)."""
        name = vendor_name(vendor)
        return self.root_url + MOUNTS[name] + SDK_SUFFIX[name]

    def stats(self) -> dict[str, Any]:
        return self.core.stats.snapshot()

    def inject(self, *faults: str) -> None:
        """Answer the next requests with these faults, in order (``"ok"`` for none)."""
        self.core.faults.inject(faults)

    @property
    def requests(self) -> list[EmulatorRequest]:
        """The most recent requests received, oldest first."""
        return list(self.core.requests)


@asynccontextmanager
async def run_emulator(config: EmulatorConfig | None = None) -> AsyncIterator[Emulator]:
    emulator = Emulator(config)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


class EmulatorThread:
    """The emulator on its own event loop in a daemon thread."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.emulator = Emulator(config)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> EmulatorThread:
        self._thread = threading.Thread(target=self._run, name="octopipe-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise RuntimeError("the emulator did not start in time")
        if self._error is not None:
            raise RuntimeError(f"the emulator failed to start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        """Stop serving (at once for hung requests); stopping a stopped emulator is a no-op."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(START_TIMEOUT_S)
            self._thread = None

    def base_url_for(self, vendor: str) -> str:
        return self.emulator.base_url_for(vendor)

    def stats(self) -> dict[str, Any]:
        return self.emulator.stats()

    def inject(self, *faults: str) -> None:
        self.emulator.inject(*faults)

    @property
    def requests(self) -> list[EmulatorRequest]:
        return self.emulator.requests

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.emulator.start()
        except Exception as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.emulator.stop()
