"""Telling a unit's own failure from a provider that is down or refusing everyone.

A failed call is either the unit's problem (its prompt is too long, its answer was malformed)
or the provider's (the server is unreachable, answers 5xx to everyone, or refuses every
request the same way: a wrong model name, a missing permission). Charging the provider's
problems to units burns their attempt budgets in an outage; ``ProviderHealth`` decides, call
by call, which it is. It is pure (the clock is passed in) so the decisions are tested as
tables; the realtime executor acts on them.

The rules, per (provider, model, endpoint):

- A *success* proves the provider healthy: the failure streak is cleared and units parked
  for a transient error are sent again.
- A *transient* failure (connection refused/reset, timeout, 5xx, 429 after the in-call
  retries) is **not charged** to the unit: the unit is parked and sent again later. It is
  charged (an attempt of its budget) only if it fails again after the provider answered some
  other call in between, so a unit whose own request always fails still ends.
- Three failures in a row *open* the circuit: no new unit is claimed, one parked unit is
  sent as a probe at growing intervals. If no call succeeds for ``grace_s`` while the circuit
  is open, the run pauses with the reason; its parked units go back to pending with their
  budgets intact.
- A *refusal* (HTTP 400/404/422) is held until the provider shows it serves others: a
  success charges the held units (their request is at fault, as before); the same refusal
  for ``TRIP_CALLS`` units in a row with no success pauses the run instead (a wrong model
  name is the run's problem, not a thousand unit failures). When nothing else is left to
  send, two or more identical refusals with no success ever also pause the run.
- Any other failure (a malformed answer, an adapter error) is charged at once; the same one
  ``TRIP_CALLS`` times in a row with no success pauses the run.
- Auth and quota errors pause the run at once (``fatal_for_run``).
- Flex "resource unavailable" (``FlexUnavailable``) is the flex tier being busy, not an
  outage: the unit is parked uncharged and sent again (once the provider answered some call,
  or as a probe), but the failure neither extends nor breaks the failure streak, so however
  long flex stays busy the circuit does not open and the run does not pause for it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from octopipe.errors import (
    BadRequest,
    FlexUnavailable,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
    RateLimited,
    TransientProviderError,
)

OPEN_AFTER = 3  # consecutive failures (any transient kind) that open the circuit
TRIP_CALLS = 5  # identical refusals / charged errors in a row that pause the run
DEFAULT_GRACE_S = 60.0
MAX_PROBE_INTERVAL_S = 10.0
_REQUEST_ID = re.compile(r"\s*\[request [^\]]*\]")


class Kind(StrEnum):
    """How a failed call is treated."""

    FATAL = "fatal"  # auth, quota, missing key: pause now
    TRANSIENT = "transient"  # the provider may be down: park, do not charge
    REFUSED = "refused"  # 400-class: hold until the provider shows it serves others
    CHARGED = "charged"  # the unit's attempt, at once
    BUSY = "busy"  # flex has no capacity: park, do not charge, not an outage


class Verdict(StrEnum):
    """What to do with the unit whose call failed."""

    CHARGE = "charge"  # record the failure: an attempt of its budget
    PARK = "park"  # keep it claimed, send it again later, no attempt used
    HOLD = "hold"  # keep it claimed, decide later (charge, or release if the run pauses)
    RELEASE = "release"  # back to pending, no attempt used (the run is pausing)


def kind_of(exc: ProviderError) -> Kind:
    if exc.fatal_for_run:
        return Kind.FATAL
    if isinstance(exc, FlexUnavailable):
        return Kind.BUSY
    if isinstance(exc, TransientProviderError | RateLimited):
        return Kind.TRANSIENT
    if isinstance(exc, BadRequest):
        return Kind.REFUSED
    return Kind.CHARGED


def error_label(exc: BaseException) -> str:
    """What a failure looks like without what differs from call to call (request ids), for
    grouping identical errors."""
    if isinstance(exc, ProviderError):
        return _REQUEST_ID.sub("", exc.message)
    return f"{type(exc).__name__}: {exc}"[:300]


def outage_reason(exc: ProviderError, endpoint: str | None) -> str:
    """``provider unreachable: connection refused at http://...`` and the like."""
    where = f" at {endpoint}" if endpoint else ""
    label = error_label(exc)
    if isinstance(exc, ProviderUnreachable):
        return f"provider unreachable: {label}{where}"
    if isinstance(exc, ProviderTimeout):
        return f"provider not answering: {label}{where}"
    if isinstance(exc, RateLimited):
        return f"provider rate-limits every call: {label}{where}"
    return f"provider failing: {label}{where}"


@dataclass
class ProviderHealth:
    """The failure streak of one (provider, model, endpoint) and what follows from it."""

    grace_s: float = DEFAULT_GRACE_S
    probe_start_s: float = 1.0
    endpoint: str | None = None
    successes: int = 0
    streak: int = 0
    streak_label: str | None = None
    streak_kind: Kind | None = None
    streak_units: set[int] = field(default_factory=set)
    last_failure_at: float | None = None
    since: float | None = None
    """Monotonic time of the first failure of the current streak."""
    probe_interval_s: float = 0.0
    next_probe_at: float = 0.0
    last_error: ProviderError | None = None
    strikes: dict[int, int] = field(default_factory=dict)
    """uid -> ``successes`` when the unit was last parked for a transient error."""

    # --- what happened ------------------------------------------------------------------------

    def on_success(self, uid: int) -> None:
        self.successes += 1
        self.streak, self.streak_label, self.streak_kind = 0, None, None
        self.streak_units.clear()
        self.since = None
        self.probe_interval_s = 0.0
        self.strikes.pop(uid, None)

    def on_failure(self, uid: int, exc: ProviderError, now: float) -> Verdict:
        """Record a failed call of unit ``uid`` and say what to do with the unit."""
        kind = kind_of(exc)
        if kind is Kind.FATAL:
            return Verdict.RELEASE
        if kind is Kind.BUSY:  # the tier is busy: no streak, never charged
            self.strikes[uid] = self.successes
            self._probe_later(now)
            return Verdict.PARK
        self.last_error = exc
        self._extend_streak(uid, kind, error_label(exc), now)
        if kind is Kind.TRANSIENT:
            struck = self.strikes.get(uid)
            if struck is not None and self.successes > struck:
                del self.strikes[uid]  # failed again while the provider answered others
                return Verdict.CHARGE
            self.strikes[uid] = self.successes
            self._probe_later(now)
            return Verdict.PARK
        if kind is Kind.REFUSED:
            return Verdict.HOLD
        return Verdict.CHARGE

    def forget(self, uid: int) -> None:
        """The unit left this executor (recorded or released)."""
        self.strikes.pop(uid, None)

    # --- what follows -------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """No new units are claimed while open (only parked ones are sent, as probes)."""
        return self.streak_kind is Kind.TRANSIENT and self.streak >= OPEN_AFTER

    def may_send_parked(self, uid: int, now: float, *, in_flight: int) -> bool:
        """A parked unit goes again once the provider answered some call since it was parked;
        otherwise only when nothing of this provider is in flight (as a probe, at growing
        intervals): an open circuit claims no new units, so its calls drain and the probes
        take over."""
        if self.successes > self.strikes.get(uid, self.successes):
            return True
        return in_flight == 0 and now >= self.next_probe_at

    def pause_reason(self, now: float, *, idle: bool) -> str | None:
        """Why the run must pause now, or ``None``. ``idle``: nothing of this target is in
        flight and no new unit is waiting, so held refusals will not be joined by others."""
        exc = self.last_error
        if exc is None or self.streak_kind is None:
            return None
        units = len(self.streak_units)
        if self.is_open and self.since is not None and now - self.since >= self.grace_s:
            return (
                f"{outage_reason(exc, self.endpoint)} ({self.streak} calls failed in a row "
                f"over {now - self.since:.0f} s)"
            )
        if self.streak_kind is Kind.REFUSED and (
            self.streak >= TRIP_CALLS or (idle and units >= 2 and self.successes == 0)
        ):
            return f"every call is refused: {self.streak_label} ({units} units in a row)"
        if self.streak_kind is Kind.CHARGED and self.streak >= TRIP_CALLS:
            return f"every call fails: {self.streak_label} ({units} units in a row)"
        return None

    # --- internals ----------------------------------------------------------------------------

    def _extend_streak(self, uid: int, kind: Kind, label: str, now: float) -> None:
        # transient failures of any sort make one outage; other kinds must be identical
        same = kind is self.streak_kind and (kind is Kind.TRANSIENT or label == self.streak_label)
        if not same:
            self.streak, self.since = 0, now
            self.streak_units.clear()
            self.probe_interval_s = 0.0
        self.streak += 1
        self.streak_kind, self.streak_label = kind, label
        self.streak_units.add(uid)
        self.last_failure_at = now

    def _probe_later(self, now: float) -> None:
        """Back off when a failure comes after the last probe was due (a probe, or a call
        sent since, failed); failures of calls sent before it change nothing."""
        if self.probe_interval_s and now < self.next_probe_at:
            return
        start = max(self.probe_start_s, 0.01)
        self.probe_interval_s = min(
            MAX_PROBE_INTERVAL_S, start if not self.probe_interval_s else self.probe_interval_s * 2
        )
        self.next_probe_at = now + self.probe_interval_s


# --- telling the user, without flooding ---------------------------------------------------------

DIGEST_EVERY_S = 10.0


@dataclass
class _Pending:
    calls: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


@dataclass
class ErrorDigest:
    """Provider errors for the run log: the first of each kind at once, in full (unit,
    attempt, what happened to the unit); then, at most once per ``every_s`` per kind, one
    line counting the others. ``flush`` writes what is waiting."""

    write: Callable[[str, str], None]
    """Where lines go: ``(tag, message)``, the run log's ``write``."""
    every_s: float = DIGEST_EVERY_S
    _last: dict[str, float] = field(default_factory=dict)
    _waiting: dict[str, _Pending] = field(default_factory=dict)

    def note(self, label: str, unit_id: str, outcome: str, now: float) -> None:
        last = self._last.get(label)
        if last is None or now - last >= self.every_s:
            self._emit(label, now)
            self._last[label] = now
            self._say(f"{label}: unit {unit_id}: {outcome}")
            return
        pending = self._waiting.setdefault(label, _Pending())
        pending.calls += 1
        pending.outcomes[_short(outcome)] += 1

    def flush(self, now: float, force: bool = False) -> None:
        for label in list(self._waiting):
            if force or now - self._last.get(label, 0.0) >= self.every_s:
                self._emit(label, now)

    def _emit(self, label: str, now: float) -> None:
        pending = self._waiting.pop(label, None)
        if pending is None or not pending.calls:
            return
        self._last[label] = now
        outcomes = ", ".join(f"{n} {what}" for what, n in sorted(pending.outcomes.items()))
        self._say(f"{label}: {pending.calls} more call(s) since ({outcomes})")

    def _say(self, message: str) -> None:
        self.write("PROVIDER", message)


def _short(outcome: str) -> str:
    """``attempt 2/3 charged, retried later`` -> ``charged``: the summary's buckets."""
    for word in ("exhausted", "not charged", "charged", "held", "released"):
        if word in outcome:
            return word
    return outcome


__all__ = [
    "ErrorDigest",
    "Kind",
    "ProviderHealth",
    "Verdict",
    "error_label",
    "kind_of",
    "outage_reason",
]
