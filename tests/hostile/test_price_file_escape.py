"""A pipeline's ``prices:`` file must be inside the pipeline folder: a path or a link pointing
outside it is refused by ``validate``, ``try`` and ``run``, naming the key, before anything
reads it (the canary file outside is never read, printed or copied)."""

from __future__ import annotations

from support.hostile import Result, Sandbox

PRICES = "openai:\n  house-model-7b:\n    standard: {input: 0.5, output: 1.5}\n"


def _all(sandbox: Sandbox) -> list[Result]:
    return [
        sandbox.octopipe("validate", sandbox.pipeline),
        sandbox.octopipe("try", sandbox.pipeline, "--unit", "a"),
        sandbox.octopipe("run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "x"),
    ]


def _set_prices(sandbox: Sandbox, value: str) -> None:
    config = sandbox.pipeline / "config.yaml"
    config.write_text(f"prices: {value}\n" + config.read_text(encoding="utf-8"))


def test_a_prices_path_outside_the_folder_is_refused_naming_the_key(sandbox: Sandbox) -> None:
    _set_prices(sandbox, "../outside/secret.txt")
    results = _all(sandbox)
    for result in results:
        assert result.code == 2, result
        assert "prices" in result.err and "Traceback" not in result.text, result
        assert result.seconds < 30
    sandbox.assert_contained(*results)


def test_a_prices_link_pointing_outside_is_refused_naming_the_key(sandbox: Sandbox) -> None:
    sandbox.link("prices.yaml", sandbox.secret)
    _set_prices(sandbox, "prices.yaml")
    results = _all(sandbox)
    for result in results:
        assert result.code == 2, result
        assert "prices" in result.err and "Traceback" not in result.text, result
    sandbox.assert_contained(*results)


def test_a_prices_file_inside_the_folder_is_accepted(sandbox: Sandbox) -> None:
    sandbox.write("prices.yaml", PRICES)
    _set_prices(sandbox, "prices.yaml")
    result = sandbox.octopipe("validate", sandbox.pipeline)
    assert result.code == 0, result
