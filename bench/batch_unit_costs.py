"""Benchmark: the per-unit pieces of batch mode that ``batch_1m.py`` cannot separate, in process.

Each piece is timed (CPU, ``time.process_time``) the way the batch path does it and the way it
did before, alternately, so both see the same machine load:

- pricing one answer: ``costs.attempt_cost`` on the registry vs through
  ``batch_collect.MemoRates`` (a batch's rates looked up once);
- reading one result line's chat completion: the SDK's ``ChatCompletion.model_validate`` vs
  ``batch_openai.plain_completion``;
- one request line of the input file: the request copied with the batch's model and the whole
  line encoded vs ``OpenAIBatchProvider.jsonl`` (no copy when the model is already the
  batch's, the step's ``response_format`` encoded once);
- rendering one prompt of ``pipelines/batch1``: Jinja's ``Template.generate`` vs
  ``PromptRenderer.render`` (the context built from flattened globals).

    python bench/batch_unit_costs.py [--calls N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai

from octopipe.core.costs import attempt_cost
from octopipe.core.prompts import PromptRenderer
from octopipe.core.registry import load_registry
from octopipe.engine.batch_collect import MemoRates
from octopipe.providers.base import LLMRequest, ProviderSettings, Usage
from octopipe.providers.batch_base import BatchRequestLine
from octopipe.providers.batch_openai import CHAT_URL, OpenAIBatchProvider, plain_completion
from octopipe.providers.openai_adapter import openai_usage

PIPELINE = Path(__file__).resolve().parent / "pipelines" / "batch1"
TEMPLATES = PIPELINE / "templates"
AT = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
BODY: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": '{"score": 50, "label": "mid"}',
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 30,
        "completion_tokens": 12,
        "total_tokens": 42,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    },
}


def per_call_us(work: Callable[[], object], calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        work()
    return (time.process_time() - start) / calls * 1e6


def sdk_completion() -> object:
    completion = openai.types.chat.ChatCompletion.model_validate(BODY)
    choice = completion.choices[0]
    return choice.message.content, openai_usage(completion.usage), choice.finish_reason


def request_line_us(calls: int) -> tuple[float, float]:
    """CPU µs per request line: as before (the request copied with the batch's model, the
    line encoded whole), then ``jsonl`` over the same lines."""
    adapter = OpenAIBatchProvider(ProviderSettings("openai", "sk-bench", "http://127.0.0.1:9"))
    schema = json.loads((PIPELINE / "schemas" / "rate.json").read_text())
    prompt = "Rate sample {} about tea from 0 to 100 and label it low, mid or high."
    lines = [
        BatchRequestLine(
            f"tag-u{i}",
            LLMRequest(
                f"u{i}", "rate", "gpt-4o-mini", prompt.format(i), schema=schema, max_tokens=64
            ),
        )
        for i in range(calls)
    ]
    start = time.process_time()
    for line in lines:
        request = dataclasses.replace(line.request, model="gpt-4o-mini")  # as before
        body = adapter._builder.build_params(request)
        entry = {"custom_id": line.custom_id, "method": "POST", "url": CHAT_URL, "body": body}
        json.dumps(entry, ensure_ascii=False).encode()
    whole = time.process_time() - start
    start = time.process_time()
    adapter.jsonl(lines, "gpt-4o-mini")
    reused = time.process_time() - start
    return whole / calls * 1e6, reused / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    calls = parser.parse_args().calls
    registry = load_registry()
    memo = MemoRates(registry)
    usage = Usage(input_tokens=30, output_tokens=12)
    renderer = PromptRenderer(TEMPLATES, "rate.jinja2", config={"api": {}}, global_context={})
    fields = {"_repetition_id": 7, "topic": "tea", "id": "s1"}
    pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "price_us": (
            lambda: attempt_cost(registry, "fake", "gpt-4o-mini", usage, "batch", AT),
            lambda: attempt_cost(memo, "fake", "gpt-4o-mini", usage, "batch", AT),
        ),
        "result_line_us": (sdk_completion, lambda: plain_completion(BODY)),
        "render_us": (
            lambda: "".join(renderer._template.generate(fields)),
            lambda: renderer.render(fields),
        ),
    }
    figures: dict[str, dict[str, list[float]]] = {}
    for _ in range(2):  # each figure twice, before and after alternating
        for name, (before, after) in pairs.items():
            entry = figures.setdefault(name, {"before": [], "after": []})
            entry["before"].append(round(per_call_us(before, calls), 1))
            entry["after"].append(round(per_call_us(after, calls), 1))
        entry = figures.setdefault("request_line_us", {"before": [], "after": []})
        for side, value in zip(("before", "after"), request_line_us(calls), strict=True):
            entry[side].append(round(value, 1))
    print(json.dumps({"calls": calls, **figures}, indent=2))


if __name__ == "__main__":
    main()
