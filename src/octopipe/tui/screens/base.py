"""The base of every octopipe screen: typed access to the app (its port and helpers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.screen import Screen

if TYPE_CHECKING:
    from octopipe.tui.app import OctopipeApp


class OctoScreen(Screen[None]):
    @property
    def octo(self) -> OctopipeApp:
        return cast("OctopipeApp", self.app)
