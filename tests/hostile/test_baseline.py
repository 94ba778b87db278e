"""The sandbox itself: a harmless pipeline runs to the end and nothing is flagged, while a
canary that does leak is caught (so a clean result elsewhere means something)."""

from __future__ import annotations

from support.hostile import Sandbox


def test_a_harmless_pipeline_runs_and_leaks_nothing(sandbox: Sandbox) -> None:
    validated = sandbox.octopipe("validate", sandbox.pipeline)
    ran = sandbox.octopipe("run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "ok")
    assert validated.code == 0, validated
    assert ran.code == 0, ran
    assert (sandbox.runs / "ok" / "ledger.db").exists()
    sandbox.assert_contained(validated, ran)


def test_the_sandbox_sees_a_canary_that_reaches_the_ledger(sandbox: Sandbox) -> None:
    sandbox.write("items.yaml", f"items:\n  - {{name: a, value: 1, note: {sandbox.canary}}}\n")
    ran = sandbox.octopipe("run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "c")
    assert ran.code == 0, ran
    leaks = sandbox.leaks(ran)
    assert "written into work/runs/c/config/items.yaml" in leaks, leaks
    assert any("ledger.db" in leak for leak in leaks), leaks
