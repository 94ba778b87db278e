"""Fault choice, rate limiting and counters for the emulator.

Guarantees:

- ``FaultPlan.next()`` first consumes the scheduled faults (from the config, then any added
  with ``inject``) one per request, then draws from the configured probabilities with a
  generator seeded by the config: the same config and request order give the same faults.
- ``RateLimiter`` accepts at most ``rpm`` requests per (vendor, model) in any sliding window
  of ``window_s`` seconds. A refused request does not count, and the refusal says how long
  until the oldest accepted request leaves the window.
- ``EmulatorStats`` may be read from any thread while the server updates it.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

from octopipe.emulator.config import NO_FAULT, EmulatorConfig, check_fault_kind


class FaultPlan:
    """Decides, request by request, which fault (if any) to inject."""

    def __init__(self, config: EmulatorConfig) -> None:
        self._queue: deque[str] = deque(config.fault_schedule)
        self._weights = sorted(config.faults.items())
        self._rng = random.Random(config.seed)
        self._lock = threading.Lock()

    def inject(self, kinds: Iterable[str]) -> None:
        """Schedule faults for the next requests, after those already scheduled."""
        with self._lock:
            self._queue.extend(check_fault_kind(k, allow_ok=True) for k in kinds)

    def next(self) -> str | None:
        with self._lock:
            if self._queue:
                kind = self._queue.popleft()
                return None if kind == NO_FAULT else kind
            draw = self._rng.random()
        for kind, probability in self._weights:
            if draw < probability:
                return kind
            draw -= probability
        return None


class RateLimiter:
    """Sliding-window request counter per (vendor, model)."""

    def __init__(self, config: EmulatorConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._accepted: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, vendor: str, model: str) -> float | None:
        """Record the request and return None, or refuse it: seconds until a slot frees up."""
        limit = self._config.rpm_for(model)
        if limit is None:
            return None
        now = self._clock()
        window = self._config.rpm_window_s
        with self._lock:
            accepted = self._accepted.setdefault((vendor, model), deque())
            while accepted and accepted[0] <= now - window:
                accepted.popleft()
            if len(accepted) >= limit:
                return max(accepted[0] + window - now, 0.001)
            accepted.append(now)
        return None


class EmulatorStats:
    """Counters of what the emulator received and sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._statuses: Counter[int] = Counter()
        self._faults: Counter[str] = Counter()
        self._rate_limited = 0

    def request(self, endpoint: str) -> None:
        with self._lock:
            self._requests[endpoint] += 1

    def response(self, status: int) -> None:
        with self._lock:
            self._statuses[status] += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def rate_limited(self) -> None:
        with self._lock:
            self._rate_limited += 1

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy: ``requests_total``, ``requests`` by endpoint, ``responses`` by
        status, ``rate_limited`` (429s from the rpm limiter), ``faults`` by kind,
        ``status_429`` (every 429 sent, limiter and injected)."""
        with self._lock:
            return {
                "requests_total": sum(self._requests.values()),
                "requests": dict(self._requests),
                "responses": {str(k): v for k, v in sorted(self._statuses.items())},
                "status_429": self._statuses[429],
                "rate_limited": self._rate_limited,
                "faults": dict(self._faults),
            }


def retry_after_header(seconds: float) -> str:
    """Whole seconds, rounded up, as HTTP wants (at least 1 when any wait is needed)."""
    return str(max(1, math.ceil(seconds))) if seconds > 0 else "0"
