"""A run keeps every session's price record (``price_history``), not only the latest."""

from __future__ import annotations

from octopipe.engine.prices import session_prices

OLD = {"database": "genai-prices 0.0.40 (bundled data)", "price_files": []}
NEW = {"database": "genai-prices 0.0.41 (downloaded)", "price_files": [{"file": "p.yaml"}]}


def test_the_first_session_starts_the_history() -> None:
    options = session_prices({}, OLD)
    assert options["prices"] == OLD
    [first] = options["price_history"]
    assert {k: v for k, v in first.items() if k != "session_started_at"} == OLD
    assert first["session_started_at"].endswith(("Z", "+00:00"))


def test_each_session_appends_and_keeps_the_earlier_ones() -> None:
    first = session_prices({}, OLD)
    second = session_prices({"other": 1, **first}, NEW)
    assert second["prices"] == NEW
    assert [r["database"] for r in second["price_history"]] == [OLD["database"], NEW["database"]]
    third = session_prices({**first, **second}, NEW)
    assert len(third["price_history"]) == 3  # one per session, even with the same source


def test_a_run_from_before_the_history_keeps_its_last_record_first() -> None:
    options = session_prices({"prices": OLD}, NEW)
    assert options["price_history"][0] == OLD  # no session time known for it
    assert options["price_history"][1]["database"] == NEW["database"]
