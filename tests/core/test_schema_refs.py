"""``$ref`` resolution: contained, checked at load, bundled into one self-contained schema
that the validator, the coercion walker and the mock answers all read the same way."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from octopipe.core.coercion import CompiledSchema
from octopipe.core.schema_refs import SchemaProblems, load_schema
from octopipe.core.schema_values import schema_value
from octopipe.core.validation import AnswerValidator


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    folder = tmp_path / "pipeline" / "schemas"
    folder.mkdir(parents=True)
    return Path(os.path.realpath(folder))


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test here fails if anything tried to fetch a URL (even if that was caught)."""
    fetched: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        fetched.append(args)
        raise OSError("no network in this test")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    yield
    assert fetched == []


def write(folder: Path, name: str, schema: Any) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(schema))
    return path


def load(folder: Path, name: str = "main.json") -> dict[str, Any]:
    return load_schema(folder, folder / name, f"schemas/{name}")


def problems(folder: Path, name: str = "main.json") -> list[tuple[str, str, str]]:
    with pytest.raises(SchemaProblems) as exc:
        load(folder, name)
    return [(p.file, p.key_path, p.message) for p in exc.value.problems]


def test_a_schema_with_only_local_references_is_returned_as_it_is(schemas: Path) -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/a"}, "b": {"$ref": "#b"}},
        "$defs": {"a": {"type": "integer"}, "b": {"$anchor": "b", "type": "string"}},
    }
    write(schemas, "main.json", schema)
    assert load(schemas) == schema


def test_every_bad_reference_is_reported_with_its_place(schemas: Path) -> None:
    write(
        schemas,
        "main.json",
        {
            "properties": {
                "web": {"$ref": "https://example.com/s.json"},
                "disk": {"$ref": "file:///etc/passwd"},
                "up": {"$ref": "../../x.json"},
                "gone": {"$ref": "#/$defs/gone"},
                "list": {"allOf": [{"$ref": "#/allOf/x"}]},
            }
        },
    )
    found = problems(schemas)
    assert {f for f, _, _ in found} == {"schemas/main.json"}
    messages = {k: m for _, k, m in found}
    assert sorted(messages) == [
        "properties.disk.$ref",
        "properties.gone.$ref",
        "properties.list.allOf[0].$ref",
        "properties.up.$ref",
        "properties.web.$ref",
    ]
    assert messages["properties.web.$ref"].startswith(
        "$ref 'https://example.com/s.json' would be fetched from the network"
    )
    assert messages["properties.disk.$ref"].startswith(
        "$ref 'file:///etc/passwd' points to /etc/passwd, outside the schema folder"
    )
    assert "outside the schema folder" in messages["properties.up.$ref"]
    assert messages["properties.gone.$ref"] == "$ref '#/$defs/gone' points to nothing"
    assert messages["properties.list.allOf[0].$ref"] == "$ref '#/allOf/x' points to nothing"


def test_a_schema_id_is_a_base_uri_and_never_a_fetch(schemas: Path) -> None:
    write(
        schemas,
        "main.json",
        {
            "$id": "https://example.com/root.json",
            "properties": {"a": {"$ref": "#/$defs/a"}, "b": {"$ref": "other.json"}},
            "$defs": {"a": {"type": "string"}},
        },
    )
    ((_, key, message),) = problems(schemas)
    assert key == "properties.b.$ref"
    assert message.startswith(
        "$ref 'other.json' (resolved to 'https://example.com/other.json') would be fetched"
    )


def test_a_link_in_the_schema_folder_cannot_carry_a_reference_out(
    schemas: Path, tmp_path: Path
) -> None:
    secret = write(tmp_path, "secret.json", {"type": "string"})
    (schemas / "common.json").symlink_to(secret)
    write(schemas, "main.json", {"properties": {"a": {"$ref": "common.json"}}})
    ((_, _, message),) = problems(schemas)
    assert f"(a link to {os.path.realpath(secret)}), outside the schema folder" in message


def test_references_to_other_schema_files_are_bundled_into_one_document(schemas: Path) -> None:
    write(
        schemas,
        "defs/common.json",
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "common",
            "$defs": {
                "score": {"type": "integer", "minimum": 0},
                "card": {
                    "type": "object",
                    "properties": {
                        "score": {"$ref": "#/$defs/score"},
                        "next": {"$ref": "../main.json"},
                    },
                },
            },
        },
    )
    write(
        schemas,
        "main.json",
        {
            "type": "object",
            "properties": {
                "card": {"$ref": "defs/common.json#/$defs/card"},
                "any": {"$ref": "defs/common.json#/$defs/card/properties/next"},
            },
            "required": ["card"],
        },
    )
    bundle = load(schemas)
    text = json.dumps(bundle)
    assert "common.json" not in text.replace("file_defs_common_json", "")
    embedded = bundle["$defs"]["file_defs_common_json"]
    assert "$schema" not in embedded and "$id" not in embedded
    assert bundle["properties"]["card"] == {"$ref": "#/$defs/file_defs_common_json/$defs/card"}
    card = embedded["$defs"]["card"]["properties"]
    assert card["score"] == {"$ref": "#/$defs/file_defs_common_json/$defs/score"}
    assert card["next"] == {"$ref": "#"}
    validator = AnswerValidator(bundle, None)
    assert validator.validate_answer('{"card": {"score": "4"}}', {}).ok
    refused = validator.validate_answer('{"card": {"score": -1}}', {})
    assert [v.path for v in refused.violations] == ["card.score"]
    assert CompiledSchema(bundle).coerce({"card": {"score": "7"}}) == {"card": {"score": 7}}
    mock = schema_value(bundle, "unit")
    assert validator.validate_record(mock, {}).ok


def test_a_file_that_is_not_a_schema_is_named(schemas: Path) -> None:
    (schemas / "common.json").write_text("{not json")
    write(schemas, "main.json", {"properties": {"a": {"$ref": "common.json"}}})
    assert problems(schemas) == [
        (
            "schemas/common.json",
            "",
            "the schema file is not JSON: line 1: Expecting property name enclosed in double quotes",
        )
    ]


def test_the_validator_never_fetches_even_a_reference_it_was_not_warned_of() -> None:
    validator = AnswerValidator({"properties": {"a": {"$ref": "https://example.com/a.json"}}}, None)
    outcome = validator.validate_answer('{"a": 1}', {})
    assert not outcome.ok
    assert outcome.violations[0].rule == "schema_$ref"


def test_mock_answers_never_fail_on_references_they_cannot_follow() -> None:
    schema = {
        "type": "object",
        "required": ["a", "b", "c", "d"],
        "properties": {
            "a": {"$ref": "#/$defs/missing"},
            "b": {"$ref": "#anchor"},
            "c": {"$ref": "https://example.com/c.json"},
            "d": {
                "type": "object",
                "required": ["d"],
                "properties": {"d": {"$ref": "#/properties/d"}},
            },
        },
    }
    value = schema_value(schema, "seed")
    assert set(value) == {"a", "b", "c", "d"}
