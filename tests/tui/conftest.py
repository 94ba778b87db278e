"""The TUI tests' fixtures (defined in tui_support.py, a name no other test folder uses)."""

from tui_support import built_runs, make_app, runs, spawned

__all__ = ["built_runs", "make_app", "runs", "spawned"]
