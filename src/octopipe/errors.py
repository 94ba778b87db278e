"""The one exception tree of octopipe.

Every error carries structured fields and a user-facing message. Library code raises these;
only the CLI turns them into an exit code (see ``EXIT_CODES``) and the TUI into a notification.

Per-unit problems (an expression that raises for one unit, a prompt that fails to render, an
answer that fails validation) are *not* exceptions that escape a run: the code that meets them
turns them into failure records for that unit. The classes below that describe unit-level
problems (``ExpressionError``, ``RenderError``) exist so the core can raise them and the engine
can catch them by type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from octopipe.providers.ratelimit_headers import StatedLimits


class OctopipeError(Exception):
    """Base of every error octopipe raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigProblem:
    """One problem found in a pipeline folder: where it is and what is wrong."""

    file: str
    line: int | None
    key_path: str
    message: str
    hint: str | None = None
    level: str = "error"  # "error" fails validation; "warning" is reported but passes

    def render(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        key = f" [{self.key_path}]" if self.key_path else ""
        hint = f" (did you mean {self.hint!r}?)" if self.hint else ""
        tag = "" if self.level == "error" else f"{self.level}: "
        return f"{where}{key}: {tag}{self.message}{hint}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "key_path": self.key_path,
            "message": self.message,
            "hint": self.hint,
            "level": self.level,
        }


class ConfigError(OctopipeError):
    """A pipeline folder is invalid. Carries every problem found, not only the first."""

    exit_code = 2

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(p.render() for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in pipeline:\n{lines}")

    @classmethod
    def single(
        cls,
        file: str,
        message: str,
        *,
        line: int | None = None,
        key_path: str = "",
        hint: str | None = None,
    ) -> ConfigError:
        return cls([ConfigProblem(file, line, key_path, message, hint)])


class UsageError(OctopipeError):
    """The command line asked for something impossible (unknown run, bad flag combination)."""

    exit_code = 2


class CommandError(UsageError):
    """A command to a run is malformed: an unknown kind, a missing or ill-typed argument
    (built by a caller, or read back from a damaged command queue)."""


class AnswerHookError(UsageError):
    """The file named by ``--answers`` cannot serve as an emulator answer hook (unreadable,
    fails to import, or defines no ``answer(request)`` function)."""


class AnalysisArgsError(UsageError):
    """The built-in analysis (Octobatch's ``analyze_results.py`` options) was given arguments
    it cannot use; the message says which, as the script would."""


class AnalysisEmpty(OctopipeError):
    """The built-in analysis found nothing to analyse (no records, or none with both the
    group and the field); Octobatch's script exits 1 with the same message."""


class PostProcessError(OctopipeError):
    """A post-processing step or run-scope step cannot be run as configured (a glob or an
    output path that leaves the run folder, a script that is missing from the snapshot)."""


# --- unit-level failures raised inside the core ------------------------------------------------


class ExpressionError(OctopipeError):
    """An expression failed to compile or to evaluate."""

    def __init__(self, expression: str, message: str, variable: str | None = None) -> None:
        self.expression = expression
        self.variable = variable
        self.detail = message
        target = f"{variable} = " if variable else ""
        super().__init__(f"{target}{expression!r}: {message}")


class UnsafeExpressionError(ExpressionError):
    """An expression uses a construct the safe evaluator refuses (imports, dunders, ...)."""


class EvaluationCancelled(BaseException):
    """An expression or template evaluation was stopped because the run is pausing.

    Not the unit's fault, so never recorded as a failure: the unit goes back to pending. A
    ``BaseException`` (like ``KeyboardInterrupt``) so that no handler meant for unit errors
    catches it.
    """


class RenderError(OctopipeError):
    """A prompt template failed to render for one unit."""

    def __init__(self, template: str, message: str, line: int | None = None) -> None:
        self.template = template
        self.line = line
        self.detail = message
        where = template if line is None else f"{template}:{line}"
        super().__init__(f"{where}: {message}")


# --- run store ---------------------------------------------------------------------------------


class StoreError(OctopipeError):
    """The run ledger cannot be used (corrupt, truncated, written by a newer octopipe)."""

    exit_code = 4


class UnstorableValue(StoreError):
    """A value a unit produced cannot be stored as JSON (NaN, infinity, an object)."""


class CorruptValue(StoreError):
    """A value stored in the ledger is not what was written (not valid JSON): the message
    names the row (unit, step, attempt) it was read from."""


class CannotWrite(OctopipeError):
    """A file or folder octopipe must write (a run folder, its outputs, its log) cannot be
    written: read-only, full, or not a folder. The message names the path and the reason."""

    exit_code = 4

    def __init__(self, path: object, reason: str, what: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        label = f"{what} " if what else ""
        super().__init__(f"cannot write {label}{self.path}: {reason}")

    @classmethod
    def from_os_error(cls, exc: OSError, path: object, what: str = "") -> CannotWrite:
        """``PermissionError(13, ...)`` -> ``cannot write export /x: permission denied``
        (the path the error names, else ``path``)."""
        where = exc.filename if exc.filename is not None else path
        return cls(where, cls.reason_of(exc), what)

    @staticmethod
    def reason_of(exc: OSError) -> str:
        return (exc.strerror or type(exc).__name__).lower()


class RunNotFound(UsageError):
    def __init__(self, name: str, where: str) -> None:
        self.name = name
        super().__init__(f"no run named {name!r} under {where}")


class SnapshotChanged(UsageError):
    """A run's snapshot (``runs/NAME/config/``) no longer matches the fingerprint its ledger
    recorded at init: files were edited, added or removed after the run was created."""

    def __init__(self, message: str, changed: list[str]) -> None:
        self.changed = list(changed)
        super().__init__(message)


class RunLocked(OctopipeError):
    """Another live process holds the run's lock."""

    exit_code = 5


class IllegalTransition(OctopipeError):
    """A state machine was asked for a move its transition table does not allow."""

    def __init__(self, machine: str, state: str, event: str) -> None:
        self.machine, self.state, self.event = machine, state, event
        super().__init__(f"{machine}: no transition from {state!r} on {event!r}")


# --- providers -----------------------------------------------------------------------------------


class ProviderError(OctopipeError):
    """Base of errors raised by provider adapters, classified by type and HTTP status."""

    retryable: bool = False
    fatal_for_run: bool = False

    def __init__(self, message: str, *, provider: str, status: int | None = None) -> None:
        self.provider = provider
        self.status = status
        super().__init__(f"{provider}: {message}" + (f" (HTTP {status})" if status else ""))


class RateLimited(ProviderError):
    """HTTP 429. ``retry_after`` is the server's hint in seconds, when it gave one;
    ``stated_limits`` the account limits the refusal's headers stated, when they did."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = 429,
        retry_after: float | None = None,
        stated_limits: StatedLimits | None = None,
    ) -> None:
        super().__init__(message, provider=provider, status=status)
        self.retry_after = retry_after
        self.stated_limits = stated_limits


class TransientProviderError(ProviderError):
    """408, 5xx, 529, connection reset, timeout: worth retrying the same request."""

    retryable = True


class FlexUnavailable(TransientProviderError):
    """HTTP 429 "resource unavailable" to a flex-tier request (OpenAI's ``service_tier:
    "flex"``): flex has no capacity right now. Not a rate limit (the account's pace is not
    at fault, so pacing does not slow down) and not the unit's fault (no attempt of its
    budget is spent): retried, then, as ``--flex-fallback`` says, sent at standard or parked
    and tried again at flex."""

    def __init__(
        self, message: str, *, provider: str, status: int | None = 429,
        retry_after: float | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message, provider=provider, status=status)
        self.retry_after = retry_after


class ProviderUnreachable(TransientProviderError):
    """No HTTP exchange took place: connection refused or reset, host not found."""


class ProviderTimeout(TransientProviderError):
    """The request did not finish within its timeout."""


class IncompleteResults(TransientProviderError):
    """A batch's results arrived incomplete: a download was cut short, so the lines it lacks
    are not known to be missing at the provider. Raised by ``collect`` after the lines it
    could read; the caller fetches the results again before taking any request as dropped.

    ``certain``: the download is known to be cut (a connection that broke, fewer bytes than
    announced or reported for the file, a last line cut in half). Otherwise the results only
    hold fewer lines than the provider's counts with no byte count to check them against:
    a download that comes back the same (same ``signature``) is then complete as it is.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        batch_id: str,
        certain: bool,
        signature: tuple[int, ...] = (),
    ) -> None:
        super().__init__(message, provider=provider)
        self.batch_id = batch_id
        self.certain = certain
        self.signature = signature


class MalformedResponse(ProviderError):
    """The provider answered (HTTP 2xx) but not in the shape its API promises: a choice
    without ``message``, no choices at all. The call may have been billed, so the adapter
    keeps what it could read: ``raw`` (the answer's body as JSON text) and ``usage``. The
    engine records it as a failed attempt of the unit at stage ``parse``."""

    retryable = True

    def __init__(
        self, message: str, *, provider: str, raw: str | None = None, usage: Any = None
    ) -> None:
        super().__init__(message, provider=provider)
        self.raw = raw
        self.usage = usage


class AdapterError(ProviderError):
    """A provider adapter raised something outside its contract (a bug, an SDK surprise):
    a failed attempt of that unit, retried within its budget."""

    retryable = True


class BadRequest(ProviderError):
    """HTTP 400/404/413/422 for this request: fails the unit, not the run."""


class AuthError(ProviderError):
    """HTTP 401/403: no request will succeed; the run pauses with this message."""

    fatal_for_run = True
    exit_code = 6


class QuotaExhausted(ProviderError):
    """Billing or quota exhausted (not a transient rate limit): the run pauses."""

    fatal_for_run = True
    exit_code = 6


class MissingApiKey(ProviderError):
    fatal_for_run = True
    exit_code = 6


# Exit codes by category (luigi-style): scripts can tell a bad config from a failed run.
EXIT_OK = 0
EXIT_FAILURE = 1  # the command ran but the outcome is not clean (failed units, findings)
EXIT_USAGE = 2  # bad config or command line
EXIT_STORE = 4
EXIT_LOCKED = 5
EXIT_PROVIDER = 6
EXIT_INTERRUPTED = 130
