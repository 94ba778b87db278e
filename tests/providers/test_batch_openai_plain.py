"""The OpenAI batch adapter reads the common chat completion without the SDK's model
(``batch_openai.plain_completion``), with the same values, and leaves any other shape to it."""

from __future__ import annotations

import copy
from typing import Any

import openai
import pytest

from octopipe.providers.batch_openai import plain_completion
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
