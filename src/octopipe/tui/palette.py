"""The command palette's octopipe commands (Ctrl+P): every action the current screen binds
to a key, plus help, each named as in the footer with its key; in read-only mode the
actions that change a run, write a file or spend money are not offered at all.

Running a command is exactly pressing its key: the palette calls the screen's own action,
so the palette and the keys can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

MUTATING = frozenset(
    {
        "new_run",
        "launch",
        "pause",
        "resume",
        "resume_run",
        "retry",
        "kill",
        "archive",
        "rename",
        "mode",
        "revalidate",
        "export",
        "save",
        "troubleshoot",
        "editor",
    }
)
"""Actions (by name, without arguments) hidden in read-only mode."""


@dataclass(frozen=True)
class PaletteCommand:
    title: str
    help: str
    action: str


def _action_name(action: str) -> str:
    return action.split("(", 1)[0]


def screen_commands(screen: Screen[object], read_only: bool) -> list[PaletteCommand]:
    """The commands offered for ``screen``: its bound actions (once each, first key shown),
    then help; mutating ones left out when ``read_only``."""
    seen: set[str] = set()
    out: list[PaletteCommand] = []
    bindings = [b for b in screen.BINDINGS if isinstance(b, Binding)]
    for binding in bindings:
        name = _action_name(binding.action)
        if binding.action in seen or (read_only and name in MUTATING):
            continue
        seen.add(binding.action)
        key = binding.key_display or binding.key
        out.append(PaletteCommand(binding.description or name, f"key {key}", binding.action))
    out.append(PaletteCommand("Help", "key ?: the keys of this screen", "app.help"))
    return out


class OctopipeCommands(Provider):
    """The palette provider: the current screen's commands, fuzzy-matched on their title."""

    def _commands(self) -> Iterator[PaletteCommand]:
        read_only = bool(getattr(self.app, "read_only", False))
        yield from screen_commands(self.screen, read_only)

    async def _run(self, action: str) -> None:
        if action.startswith("app."):
            await self.app.run_action(action.removeprefix("app."))
        else:
            await self.screen.run_action(action)

    async def discover(self) -> Hits:
        for command in self._commands():
            yield DiscoveryHit(command.title, partial(self._run, command.action), help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands():
            score = matcher.match(command.title)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(command.title),
                    partial(self._run, command.action),
                    help=command.help,
                )
