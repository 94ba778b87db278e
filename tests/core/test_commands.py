"""Commands to a run: every one survives the codec unchanged, and anything that is not a
command is refused with a CommandError saying what is wrong (never another exception)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from octopipe.core.commands import (
    BY_KIND,
    COMMANDS,
    Command,
    Pause,
    Rename,
    Retry,
    SwitchMode,
    decode,
    encode,
)
from octopipe.errors import CommandError, UsageError
from support.commands import EXAMPLES


def test_every_kind_of_command_has_an_example() -> None:
    assert {type(c) for c in EXAMPLES} == set(COMMANDS)
    assert sorted(BY_KIND) == sorted(c.kind for c in COMMANDS)


@pytest.mark.parametrize("command", EXAMPLES, ids=repr)
def test_every_command_round_trips_through_the_stored_form(command: Command) -> None:
    kind, args = encode(command)
    stored = json.dumps(args, allow_nan=False)  # what the store writes
    assert decode(kind, json.loads(stored)) == command


def test_the_stored_form_is_the_kind_and_the_fields_that_are_set() -> None:
    assert encode(Retry(step_idx=1, unit_ids=("x",))) == (
        "retry",
        {"step_idx": 1, "unit_ids": ["x"]},
    )
    assert encode(Pause()) == ("pause", {})
    assert encode(SwitchMode("batch")) == ("switch_mode", {"mode": "batch"})


@pytest.mark.parametrize(
    ("kind", "args", "message"),
    [
        ("explode", {}, "unknown command 'explode'"),
        ("pause", ["user"], "command 'pause': its arguments are not a JSON object"),
        ("pause", {"why": "x"}, "command 'pause': unknown argument(s) why"),
        ("rename", {}, "command 'rename': missing argument(s) display_name"),
        ("rename", {"display_name": 5}, "command 'rename': display_name must be a string, not 5"),
        (
            "retry",
            {"step_idx": "1"},
            "command 'retry': step_idx must be a step index (an integer), not '1'",
        ),
        (
            "retry",
            {"step_idx": True},
            "command 'retry': step_idx must be a step index (an integer), not True",
        ),
        (
            "retry",
            {"unit_ids": ["a", 3]},
            "command 'retry': unit_ids must be a list of unit ids (strings), not ('a', 3)",
        ),
        (
            "retry",
            {"unit_ids": "a"},
            "command 'retry': unit_ids must be a list of unit ids (strings), not 'a'",
        ),
        ("retry", {"stage": 3}, "command 'retry': stage must be a string, not 3"),
        (
            "switch_mode",
            {"mode": "fast"},
            "command 'switch_mode': mode must be 'batch' or 'realtime', not 'fast'",
        ),
        (
            "update_settings",
            {"options": [1]},
            "command 'update_settings': options must be an object with string keys, not [1]",
        ),
        ("pause", {"reason": "x" * 200}, None),  # long values are fine
    ],
)
def test_what_is_not_a_command_is_refused_saying_why(
    kind: str, args: Any, message: str | None
) -> None:
    if message is None:
        assert decode(kind, args) == Pause("x" * 200)
        return
    with pytest.raises(CommandError) as info:
        decode(kind, args)
    assert info.value.message == message
    assert isinstance(info.value, UsageError)  # the CLI exits 2 on one


def test_a_command_checks_its_arguments_when_it_is_built() -> None:
    with pytest.raises(CommandError, match="display_name must be a string"):
        Rename(None)  # type: ignore[arg-type]
    with pytest.raises(CommandError, match="unit_ids must be a list of unit ids"):
        Retry(unit_ids=["a"])  # type: ignore[arg-type]


def test_long_values_are_cut_in_messages() -> None:
    with pytest.raises(CommandError) as info:
        decode("rename", {"display_name": ["x" * 500]})
    assert len(info.value.message) < 160 and info.value.message.endswith("...")
