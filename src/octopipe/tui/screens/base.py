"""The base of every octopipe screen: typed access to what the app gives its screens (its port
and helpers), named as a protocol so that the screens never import the app that imports them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast

from textual.screen import Screen

from octopipe.tui.port import RunControl, RunQueries

R = TypeVar("R")


class Host(Protocol):
    """What a screen may use of ``tui.app.OctopipeApp``."""

    queries: RunQueries
    control: RunControl
    read_only: bool
    refresh_s: float

    def background(
        self,
        fn: Callable[[], R],
        done: Callable[[R], Any] | None = None,
        *,
        what: str,
        group: str = "default",
        exclusive: bool = False,
    ) -> None: ...

    def fail(self, what: str, message: str) -> None: ...

    def now(self) -> datetime: ...


class OctoScreen(Screen[None]):
    @property
    def octo(self) -> Host:
        return cast(Host, self.app)
