"""The OpenAI batch adapter reads the common chat completion without the SDK's model
(``batch_openai.plain_completion``), with the same values, and leaves any other shape to it."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import openai
import pytest

from octopipe.providers.base import LLMRequest, ProviderSettings
from octopipe.providers.batch_base import BatchRequestLine
from octopipe.providers.batch_openai import OpenAIBatchProvider, plain_completion
from octopipe.providers.openai_adapter import openai_usage


def body(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": '{"score": 5}', "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 9,
            "total_tokens": 129,
            "prompt_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 3},
        },
    }
    value.update(changes)
    return value


def sdk_reading(value: dict[str, Any]) -> tuple[Any, ...]:
    completion = openai.types.chat.ChatCompletion.model_validate(value)
    choice = completion.choices[0]
    return (
        choice.message.content or "",
        openai_usage(completion.usage),
        choice.finish_reason,
        completion.model,
        completion.id,
    )


def test_the_common_completion_reads_as_the_sdk_reads_it() -> None:
    assert plain_completion(body()) == sdk_reading(body())


def test_no_content_details_or_cache_counts_read_as_the_sdk_reads_them() -> None:
    value = body()
    value["choices"][0]["message"]["content"] = None
    value["choices"][0]["finish_reason"] = "length"
    value["usage"] = {"prompt_tokens": 7, "completion_tokens": 0, "total_tokens": 7}
    plain = plain_completion(value)
    assert plain == sdk_reading(value)
    assert plain is not None and plain[0] == "" and plain[2] == "length"
    assert plain[1].cached_input_tokens == 0 and plain[1].input_tokens == 7


def _choice(value: dict[str, Any]) -> dict[str, Any]:
    choice: dict[str, Any] = value["choices"][0]
    return choice


ODD_SHAPES = {
    "no choices": lambda v: v.update(choices=[]),
    "choices not a list": lambda v: v.update(choices={"0": 1}),
    "no usage": lambda v: v.pop("usage"),
    "a string count": lambda v: v["usage"].update(prompt_tokens="120"),
    "a bool count": lambda v: v["usage"].update(completion_tokens=True),
    "no total": lambda v: v["usage"].pop("total_tokens"),
    "a float cache count": lambda v: v["usage"]["prompt_tokens_details"].update(cached_tokens=1.0),
    "details not an object": lambda v: v["usage"].update(prompt_tokens_details=[1]),
    "another object": lambda v: v.update(object="chat.completion.chunk"),
    "no created": lambda v: v.pop("created"),
    "no id": lambda v: v.pop("id"),
    "a numeric model": lambda v: v.update(model=4),
    "another role": lambda v: _choice(v)["message"].update(role="user"),
    "content parts": lambda v: _choice(v)["message"].update(content=[{"type": "text"}]),
    "no message": lambda v: _choice(v).pop("message"),
    "no index": lambda v: _choice(v).pop("index"),
    "an unknown finish reason": lambda v: _choice(v).update(finish_reason="paused"),
    "no finish reason": lambda v: _choice(v).pop("finish_reason"),
}


@pytest.mark.parametrize("shape", sorted(ODD_SHAPES))
def test_any_other_shape_is_left_to_the_sdk(shape: str) -> None:
    value = copy.deepcopy(body())
    ODD_SHAPES[shape](value)
    assert plain_completion(value) is None


# --- request lines: the same bytes as json.dumps of each whole line ---------------------------


def plain_jsonl(adapter: Any, lines: list[Any], model: str) -> bytes:
    """The input file as json.dumps of each whole line, with no reuse."""
    out = []
    for line in lines:
        request = dataclasses.replace(line.request, model=model)
        entry = {
            "custom_id": line.custom_id,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": adapter._builder.build_params(request),
        }
        out.append(json.dumps(entry, ensure_ascii=False).encode())
    return b"\n".join([*out, b""])


def test_request_lines_are_the_bytes_of_each_line_encoded_whole() -> None:
    adapter = OpenAIBatchProvider(ProviderSettings("openai", "sk-test", "http://127.0.0.1:9"))
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}}
    other = {"type": "object", "properties": {"label": {"type": "string"}}}
    reordered = {"properties": {"score": {"type": "integer"}}, "type": "object"}

    def line(i: int, **fields: Any) -> BatchRequestLine:
        request = LLMRequest(f"u{i}", "rate", "gpt-4o-mini", f"prompt {i} é ✓", **fields)
        return BatchRequestLine(f"tag-u{i}", request)

    lines = [
        line(1, schema=schema),
        line(2, schema=schema, system="be brief"),
        line(3, schema=other, schema_name="other"),
        line(4, schema=schema),
        line(5, schema=reordered),
        line(6),
        line(7, schema=schema, structured_output=False),
        line(8, schema=schema, temperature=0.5, max_tokens=9),
        line(9, schema=schema, schema_name="renamed"),
    ]
    data = adapter.jsonl(lines, "gpt-4o-mini-2024-07-18")
    assert data == plain_jsonl(adapter, lines, "gpt-4o-mini-2024-07-18")
    rows = [json.loads(raw) for raw in data.splitlines()]
    names = [
        row["body"].get("response_format", {}).get("json_schema", {}).get("name") for row in rows
    ]
    r = "response"
    assert names == [r, r, "other", r, r, None, None, r, "renamed"]
    assert list(rows[4]["body"]["response_format"]["json_schema"]["schema"]) == [
        "properties",
        "type",
    ]
