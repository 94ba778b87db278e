"""Shared test factories, one importable package (``tests/`` is on ``sys.path`` through
pytest's ``pythonpath`` setting): ``from support.realtime import make_run``.

Modules: ``paths`` (examples, demos), ``commands`` (one example of every command), ``admin``,
``runner`` and ``post`` (small pipelines and runs), ``realtime`` and ``batch`` (emulator-driven
runs), ``crash`` and ``batch_crash`` (kill -9 harnesses, also used by bench/), ``report_oracle``
(what a report must say, by plain SQL), ``tui`` (runs in every state for the TUI tests).
Test modules import helpers only from here, never a sibling file by bare name
(tests/arch/test_test_imports.py).
"""
