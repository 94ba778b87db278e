"""verify compares the LLM totals row (migration 0006_attempt_totals) with the attempts;
repair rebuilds a row that drifted, and leaves a sound one alone."""

from __future__ import annotations

from octopipe.store.ledger import Ledger
from support.ledger import MakeLedger, failed_attempt, tamper, units


def _two_priced_attempts(ledger: Ledger) -> None:
    ledger.add_units(units(2))
    for claim in ledger.claim_pending(0, 10):
        attempt = failed_attempt(cost_usd=0.25, input_tokens=10, output_tokens=4, cached_tokens=1)
        ledger.record_failure(claim.uid, 0, attempt, terminal=True)


def test_sound_totals_pass_verify_and_repair_leaves_them(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    _two_priced_attempts(ledger)
    report = ledger.verify(deep=True)
    assert report.totals == []
    assert report.to_dict()["totals"] == []
    assert ledger.repair().totals is False
    assert ledger.cost_totals().known_usd == 0.5


def test_a_drifted_totals_row_is_reported_by_deep_verify_and_rebuilt(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger()
    _two_priced_attempts(ledger)
    tamper(ledger, "UPDATE attempt_totals SET cost_usd = 9.0, input_tokens = 3")

    assert ledger.verify(deep=False).totals == []  # a scan of every attempt: --deep only
    report = ledger.verify(deep=True)
    assert not report.ok
    assert report.totals == [
        "the LLM totals row says cost_usd = 9.0, the attempts add up to 0.5",
        "the LLM totals row says input_tokens = 3, the attempts add up to 20",
    ]
    assert ledger.repair().totals is True
    assert ledger.verify(deep=True).ok
    totals = ledger.cost_totals()
    assert (totals.known_usd, totals.attempts, totals.input_tokens) == (0.5, 2, 20)
    assert (totals.output_tokens, totals.cached_tokens, totals.unknown_cost_attempts) == (8, 2, 0)


def test_a_deleted_totals_row_is_reported_and_recreated(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    _two_priced_attempts(ledger)
    tamper(ledger, "DELETE FROM attempt_totals")

    assert ledger.verify(deep=True).totals == ["the LLM totals row (attempt_totals) is missing"]
    assert ledger.repair().totals is True
    assert ledger.verify(deep=True).ok
    assert ledger.cost_totals().attempts == 2


def test_unknown_costs_are_counted_and_an_empty_ledger_has_sound_totals(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger()
    assert ledger.verify(deep=True).totals == []
    ledger.add_units(units(1))
    claim = ledger.claim_pending(0, 1)[0]
    ledger.record_failure(claim.uid, 0, failed_attempt(cost_usd=None), terminal=True)
    tamper(ledger, "UPDATE attempt_totals SET unpriced = 0")
    assert ledger.verify(deep=True).totals == [
        "the LLM totals row says unpriced = 0, the attempts add up to 1"
    ]
    ledger.repair()
    assert ledger.cost_totals().unknown_cost_attempts == 1
    assert ledger.verify(deep=True).ok


def test_a_ledger_without_the_totals_table_has_nothing_to_check(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    _two_priced_attempts(ledger)
    tamper(ledger, "DROP TABLE attempt_totals")
    assert ledger.verify(deep=True).totals == []
    assert ledger.repair().totals is False
    assert ledger.cost_totals().known_usd == 0.5
