"""Commands that change a run: one union of small frozen values, and the one codec that stores
them and reads them back.

The CLI and the TUI build these and hand them to ``engine.control.change_run``; a live runner
gets them through the store's command queue and applies them with ``engine.commands.apply``,
whose ``match`` over :data:`Command` is exhaustive (mypy's ``assert_never``). A command
checks the shape of its own arguments when it is built (``CommandError`` naming the kind and
the argument); whether they make sense for a given run (a step that exists, a known stage,
unit ids of the run) is checked by ``engine.control`` before anything is queued.

The stored form is ``(kind, args)``: the kind names the class, ``args`` is a JSON object of
its fields (unset fields left out). :func:`decode` is the inverse of :func:`encode` for every
command, and refuses anything else with a ``CommandError`` (an unknown kind, an argument that
is not a field, a value of the wrong type), never another exception: a damaged queue row is
rejected by the runner, it does not stop it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args, get_type_hints

from octopipe.errors import CommandError

Mode = Literal["batch", "realtime"]
MODES: tuple[Mode, ...] = get_args(Mode)


@dataclass(frozen=True)
class Pause:
    """Stop after the current pass; in-flight units go back to pending. Resumable."""

    reason: str | None = None
    kind: ClassVar[str] = "pause"

    def __post_init__(self) -> None:
        _optional(self, "reason", str, "a string")


@dataclass(frozen=True)
class Kill:
    """Stop for good: the run can never be resumed."""

    kind: ClassVar[str] = "kill"


@dataclass(frozen=True)
class Retry:
    """Requeue failed units, and only those, with a fresh retry budget. Filters combine: the
    step (by index), the stage of the last failure, unit ids; none given means every failure."""

    step_idx: int | None = None
    stage: str | None = None
    unit_ids: tuple[str, ...] | None = None
    kind: ClassVar[str] = "retry"

    def __post_init__(self) -> None:
        if self.step_idx is not None and not _is_int(self.step_idx):
            raise _bad(self, "step_idx", "a step index (an integer)", self.step_idx)
        _optional(self, "stage", str, "a string")
        if self.unit_ids is not None and not (
            isinstance(self.unit_ids, tuple) and all(isinstance(u, str) for u in self.unit_ids)
        ):
            raise _bad(self, "unit_ids", "a list of unit ids (strings)", self.unit_ids)


@dataclass(frozen=True)
class Repair:
    """Requeue every missing unit and raise attempt counters behind their attempts."""

    kind: ClassVar[str] = "repair"


@dataclass(frozen=True)
class Rename:
    """Give the run a new display name (its folder and name stay)."""

    display_name: str
    kind: ClassVar[str] = "rename"

    def __post_init__(self) -> None:
        if not isinstance(self.display_name, str):
            raise _bad(self, "display_name", "a string", self.display_name)


@dataclass(frozen=True)
class SwitchMode:
    """Send the run's LLM steps to ``batch`` or ``realtime`` from its next start (batches
    already submitted are collected either way). Applied only while no runner is live."""

    mode: Mode
    kind: ClassVar[str] = "switch_mode"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise _bad(self, "mode", " or ".join(map(repr, MODES)), self.mode)


@dataclass(frozen=True)
class UpdateSettings:
    """Record the provider and model to use from now on and run options kept for later
    resumes (``max_cost_usd``, ``base_url``, ``answers`` ...; ``None`` clears one). Applied
    only while no runner is live."""

    provider: str | None = None
    model: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "update_settings"

    def __post_init__(self) -> None:
        _optional(self, "provider", str, "a string")
        _optional(self, "model", str, "a string")
        if not (
            isinstance(self.options, Mapping) and all(isinstance(k, str) for k in self.options)
        ):
            raise _bad(self, "options", "an object with string keys", self.options)


Command = Pause | Kill | Retry | Repair | Rename | SwitchMode | UpdateSettings
COMMANDS: tuple[type[Command], ...] = get_args(Command)
BY_KIND: dict[str, type[Command]] = {cls.kind: cls for cls in COMMANDS}

# The fields stored as JSON lists and held as tuples (the others are read back as they are).
_TUPLE_FIELDS: dict[type[Command], frozenset[str]] = {
    cls: frozenset(name for name, hint in get_type_hints(cls).items() if "tuple" in str(hint))
    for cls in COMMANDS
}

QUEUEABLE: tuple[type[Command], ...] = (Pause, Kill, Retry, Repair, Rename)
"""What a live runner applies from its queue; the others wait for the run to be paused."""
STOPPING: tuple[type[Command], ...] = (Pause, Kill)
CHANGES_RESULTS: tuple[type[Command], ...] = (Retry, Repair)
"""Commands after which the exports are stale."""


def encode(command: Command) -> tuple[str, dict[str, Any]]:
    """``(kind, args)``: what the store keeps of ``command`` (JSON-ready; unset fields left
    out, tuples as lists)."""
    args: dict[str, Any] = {}
    for f in dataclasses.fields(command):
        value = getattr(command, f.name)
        if value is None:
            continue
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        args[f.name] = value
    return command.kind, args


def decode(kind: str, args: Any) -> Command:
    """The command stored as ``(kind, args)``; ``CommandError`` saying what is wrong with it."""
    cls = BY_KIND.get(kind)
    if cls is None:
        raise CommandError(f"unknown command {kind!r}")
    if not isinstance(args, dict):
        raise CommandError(f"command {kind!r}: its arguments are not a JSON object")
    names = [f.name for f in dataclasses.fields(cls)]
    extra = sorted(set(args) - set(names))
    if extra:
        raise CommandError(f"command {kind!r}: unknown argument(s) {', '.join(extra)}")
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in args
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise CommandError(f"command {kind!r}: missing argument(s) {', '.join(missing)}")
    lists = _TUPLE_FIELDS[cls]
    values: dict[str, Any] = {
        k: tuple(v) if k in lists and isinstance(v, list) else v for k, v in args.items()
    }
    return cls(**values)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional(command: Command, name: str, kind: type, what: str) -> None:
    value = getattr(command, name)
    if value is not None and not isinstance(value, kind):
        raise _bad(command, name, what, value)


def _bad(command: Command, name: str, what: str, value: object) -> CommandError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return CommandError(f"command {command.kind!r}: {name} must be {what}, not {shown}")
