"""The emulator's HTTP server: one aiohttp app serving the three vendors on loopback.

Guarantees:

- Every vendor is mounted under its own prefix (``/openai``, ``/anthropic``, ``/gemini``) and,
  for convenience, also at the root, so ``OPENAI_BASE_URL=http://127.0.0.1:N/v1`` works too.
  ``base_url_for(vendor)`` gives the URL to hand to that vendor's SDK. Prefixes keep the
  vendors apart where their paths collide (OpenAI and Gemini v1 both have ``/v1/batches``).
- One request pipeline for all vendors, in this order: count it, parse it, record it, check
  the key (when configured), apply the rpm limit and the account limits, pick a fault, wait the latency, answer.
- A hung request is released when the emulator stops, so stopping never waits for clients.
- ``GET /_emulator/stats`` returns the counters; ``POST /_emulator/faults`` with
  ``{"schedule": ["500", "ok", "hang"]}`` schedules faults for the next requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import random
from collections import deque
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from octopipe.emulator.account_limits import AccountLimiter
from octopipe.emulator.answers import EmulatorRequest, make_answer
from octopipe.emulator.batches import BatchRoutes, BatchStats, BatchStore, Handler
from octopipe.emulator.config import STATUS_FAULTS, EmulatorConfig
from octopipe.emulator.faults import EmulatorStats, FaultPlan, RateLimiter
from octopipe.emulator.vendors import VENDORS
from octopipe.emulator.vendors.anthropic_batch import AnthropicBatchRoutes
from octopipe.emulator.vendors.base import (
    FLEX_UNAVAILABLE,
    InvalidRequest,
    Reply,
    Route,
    UnknownEndpoint,
    Vendor,
)
from octopipe.emulator.vendors.gemini_batch import GeminiBatchRoutes
from octopipe.emulator.vendors.openai_batch import OpenAIBatchRoutes

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 512 * 1024 * 1024
MOUNTS = {"openai": "/openai", "anthropic": "/anthropic", "gemini": "/gemini"}
SDK_SUFFIX = {"openai": "/v1", "anthropic": "", "gemini": ""}
ALIASES = {"openai-compatible": "openai"}


def vendor_name(name: str) -> str:
    """Canonical vendor for a provider name (``openai-compatible`` is served as ``openai``)."""
    canonical = ALIASES.get(name, name)
    if canonical not in VENDORS:
        raise ValueError(f"unknown vendor {name!r}; known: {', '.join([*VENDORS, *ALIASES])}")
    return canonical


class EmulatorCore:
    """State shared by the request handlers: config, faults, limiter, stats, request log."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.faults = FaultPlan(config)
        self.limiter = RateLimiter(config)
        self.account = AccountLimiter(config)
        self.stats: EmulatorStats = BatchStats()
        self.batches = BatchStore(config, self.stats)
        self.requests: deque[EmulatorRequest] = deque(maxlen=config.max_recorded_requests)
        self._rng = random.Random(config.seed)
        self._flex_rng = random.Random(f"flex-{config.seed}")
        self._ids = itertools.count(1)
        self._closing: asyncio.Event | None = None

    def build_app(self) -> web.Application:
        self._closing = asyncio.Event()
        # Batch uploads reach hundreds of MB (OpenAI's input files: 200 MB, Anthropic's batches:
        # 256 MB); aiohttp refuses bodies over 1 MiB by default.
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        # Batch routes first: Gemini's realtime pattern would swallow :batchGenerateContent.
        shared = BatchRoutes(self.config, self.stats, self.faults, self.batches, self._sleep)
        mount_batch_routes(app, shared, MOUNTS)
        for name, vendor in VENDORS.items():
            for route in vendor.routes():
                handler = self._handler(vendor, route)
                for prefix in (MOUNTS[name], ""):
                    app.router.add_route(route.method, prefix + route.path, handler)
        app.router.add_get("/_emulator/stats", self._get_stats)
        app.router.add_post("/_emulator/faults", self._post_faults)
        return app

    def release_hung_requests(self) -> None:
        if self._closing is not None:
            self._closing.set()

    def _handler(self, vendor: Vendor, route: Route) -> Any:
        async def handle(http: web.Request) -> web.StreamResponse:
            return await self.handle(vendor, route, http)

        return handle

    async def handle(self, vendor: Vendor, route: Route, http: web.Request) -> web.Response:
        self.stats.request(route.endpoint)
        request_id = f"req_emu_{next(self._ids):08d}"
        try:
            request = vendor.parse(route, await _json_object(http), http.match_info)
        except InvalidRequest:
            return self._send(
                vendor.error("400", model="", retry_after=None, request_id=request_id)
            )
        except UnknownEndpoint as exc:
            return self._send(Reply(404, {"error": {"message": f"not emulated: {exc}"}}))
        request = dataclasses.replace(request, path=http.path)
        self.requests.append(request)
        reply = await self._respond(vendor, request, http, request_id)
        stated = self.account.headers(vendor.name)
        if stated:
            reply = Reply(reply.status, reply.body, {**stated, **reply.headers})
        return self._send(reply)

    async def _respond(
        self, vendor: Vendor, request: EmulatorRequest, http: web.Request, request_id: str
    ) -> Reply:
        model, config = request.model, self.config
        if config.api_key and vendor.presented_key(http.headers, http.query) != config.api_key:
            return vendor.error("401", model=model, retry_after=None, request_id=request_id)
        wait = self.limiter.admit(vendor.name, model)
        if wait is None:
            wait = self.account.admit(vendor.name)
        if wait is not None:
            self.stats.rate_limited()
            return vendor.error("429", model=model, retry_after=wait, request_id=request_id)
        flex = vendor.serves_flex and request.body.get("service_tier") == "flex"
        if flex and self._flex_rng.random() < config.flex_unavailable_rate:
            self.stats.fault(FLEX_UNAVAILABLE)
            return vendor.error(
                FLEX_UNAVAILABLE, model=model, retry_after=None, request_id=request_id
            )
        fault = self.faults.next()
        if fault is not None:
            self.stats.fault(fault)
        await self._sleep(self._latency_s())
        if fault == "hang":
            await self._sleep(config.hang_max_s)
            return vendor.error("503", model=model, retry_after=None, request_id=request_id)
        if fault in STATUS_FAULTS or fault == "quota":
            retry_after = config.retry_after_s if fault == "429" else None
            return vendor.error(fault, model=model, retry_after=retry_after, request_id=request_id)
        reply = self._answer(vendor, request, request_id, malformed=fault == "malformed")
        if fault == "shapeless" and reply.status == 200:
            return Reply(200, vendor.without_answer(reply.body), reply.headers)
        return reply

    def _answer(
        self, vendor: Vendor, request: EmulatorRequest, request_id: str, *, malformed: bool
    ) -> Reply:
        try:
            answer = make_answer(
                request,
                self.config.answer_fn,
                malformed=malformed,
                cached_input_tokens=self.config.cached_input_tokens,
                cache_write_tokens=self.config.cache_write_tokens,
            )
        except Exception:
            log.exception("emulator answer function failed for %s", request.endpoint)
            return vendor.error("500", model=request.model, retry_after=None, request_id=request_id)
        self.account.used_tokens(vendor.name, answer.input_tokens + answer.output_tokens)
        return vendor.success(request, answer, request_id)

    def _latency_s(self) -> float:
        jitter = self._rng.uniform(0.0, self.config.jitter_ms) if self.config.jitter_ms else 0.0
        return (self.config.latency_ms + jitter) / 1000.0

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once when the emulator is stopping."""
        if seconds <= 0 or self._closing is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    def _send(self, reply: Reply) -> web.Response:
        self.stats.response(reply.status)
        return web.json_response(dict(reply.body), status=reply.status, headers=dict(reply.headers))

    async def _get_stats(self, http: web.Request) -> web.Response:
        return web.json_response(self.stats.snapshot())

    async def _post_faults(self, http: web.Request) -> web.Response:
        try:
            body = await _json_object(http)
            schedule = [str(kind) for kind in body.get("schedule", [])]
            self.faults.inject(schedule)
        except (InvalidRequest, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"scheduled": schedule})


async def _json_object(http: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await http.read() or b"null")
    except ValueError:
        raise InvalidRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body is not a JSON object")
    return body


def mount_batch_routes(
    app: web.Application, shared: BatchRoutes, mounts: Mapping[str, str]
) -> None:
    """Add the three vendors' batch routes under their mounts and at the root.

    Must run *before* the realtime routes are added: Gemini's realtime pattern
    ``/{v}/models/{model_action}`` would otherwise swallow ``:batchGenerateContent``.
    """
    openai_routes = OpenAIBatchRoutes(shared)
    anthropic_routes = AnthropicBatchRoutes(shared)
    gemini_routes = GeminiBatchRoutes(shared)
    plans: list[tuple[str, list[tuple[str, str, Handler]]]] = [
        (mounts["openai"], openai_routes.routes()),
        ("", openai_routes.routes()),
        (mounts["anthropic"], anthropic_routes.routes()),
        ("", anthropic_routes.routes()),
        (mounts["gemini"], gemini_routes.routes(root=False)),
        ("", gemini_routes.routes(root=True)),
    ]
    for prefix, routes in plans:
        for method, path, handler in routes:
            app.router.add_route(method, prefix + path, handler)
