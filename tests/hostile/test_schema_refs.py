"""JSON Schema ``$ref`` in a pipeline's schemas resolves only inside the schema and the
pipeline's own schema files: nothing is fetched, nothing outside the folder is read, and a
reference that escapes or dangles is a config error naming the file and the reference."""

from __future__ import annotations

import json

import pytest

from support.hostile import Result, Sandbox


def schema_with(ref: str) -> str:
    return json.dumps(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {"verdict": {"$ref": ref}},
            "required": ["verdict"],
        }
    )


def run_all(sandbox: Sandbox) -> list[Result]:
    answer = sandbox.root / "answer.json"
    answer.write_text('{"verdict": "fine"}')
    return [
        sandbox.octopipe("validate", sandbox.pipeline),
        sandbox.octopipe("try", sandbox.pipeline, "--unit", "a", "--response", answer),
        sandbox.octopipe("run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "x"),
    ]


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("{server}/schema.json", "would be fetched from the network"),
        ("{server}/schema.json#/definitions/v", "would be fetched from the network"),
        ("file://{secret}", "points to {secret}, outside the schema folder"),
        ("../../outside/secret.txt", "points to {secret}, outside the schema folder"),
        ("urn:example:verdict", "is not a schema file of this pipeline"),
        ("#/$defs/missing", "points to nothing"),
        ("#nowhere", "points to nothing"),
        ("other.json#/$defs/v", "names schemas/other.json, which does not exist"),
    ],
)
def test_a_reference_that_escapes_or_dangles_is_refused(
    sandbox: Sandbox, ref: str, says: str
) -> None:
    ref = ref.format(server=sandbox.canary_server.url, secret=sandbox.secret)
    says = says.format(secret=sandbox.secret.resolve())
    sandbox.write("schemas/judge.json", schema_with(ref))
    results = run_all(sandbox)
    for result in results:
        assert result.code == 2, result
        assert f"schemas/judge.json [properties.verdict.$ref]: $ref {ref!r} {says}" in result.err, (
            result
        )
        assert "Traceback" not in result.text, result
    assert sandbox.canary_server.hits == []
    assert not (sandbox.runs / "x").exists()
    sandbox.assert_contained(*results)


def test_a_reference_inside_a_referenced_file_is_held_to_the_same_rule(
    sandbox: Sandbox,
) -> None:
    sandbox.write("schemas/judge.json", schema_with("common.json#/$defs/verdict"))
    sandbox.write(
        "schemas/common.json",
        json.dumps({"$defs": {"verdict": {"$ref": f"{sandbox.canary_server.url}/v.json"}}}),
    )
    results = run_all(sandbox)
    for result in results:
        assert result.code == 2, result
        assert "schemas/common.json [$defs.verdict.$ref]: $ref" in result.err, result
    assert sandbox.canary_server.hits == []


def test_the_dialect_url_in_dollar_schema_is_never_fetched(sandbox: Sandbox) -> None:
    schema = {
        "$schema": f"{sandbox.canary_server.url}/dialect",
        "type": "object",
        "properties": {"verdict": {"type": "string"}},
    }
    sandbox.write("schemas/judge.json", json.dumps(schema))
    results = run_all(sandbox)
    assert [r.code for r in results] == [0, 0, 0], results
    assert sandbox.canary_server.hits == []
    sandbox.assert_contained(*results)


def test_references_to_the_pipelines_own_schema_files_work(sandbox: Sandbox) -> None:
    sandbox.write("schemas/judge.json", schema_with("common.json#/$defs/verdict"))
    sandbox.write(
        "schemas/common.json",
        json.dumps(
            {
                "$defs": {
                    "verdict": {"$ref": "#/$defs/word"},
                    "word": {"type": "string", "enum": ["fine", "poor"]},
                }
            }
        ),
    )
    validated, tried, ran = run_all(sandbox)
    assert validated.code == 0, validated
    assert tried.code == 0, tried
    assert ran.code == 0, ran
    wrong = sandbox.root / "wrong.json"
    wrong.write_text('{"verdict": "splendid"}')
    rejected = sandbox.octopipe("try", sandbox.pipeline, "--unit", "a", "--response", wrong)
    assert rejected.code == 1, rejected
    assert "'splendid' is not one of ['fine', 'poor']" in rejected.out, rejected
    sandbox.assert_contained(validated, tried, ran, rejected)
