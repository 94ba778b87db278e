"""The TUI tests' fixtures (defined in ``support/tui.py``)."""

from support.tui import built_runs, make_app, runs, spawned

__all__ = ["built_runs", "make_app", "runs", "spawned"]
