"""Wire-level checks of the emulator's batch endpoints, through the SDKs' own clients."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from octopipe.emulator import EmulatorConfig, run_emulator
from octopipe.emulator.batch_faults import BatchFaultPlan, truncate
from octopipe.emulator.cli import build_parser, config_from_args
from support.providers import SECRET_KEY


def chat_line(custom_id: str, prompt: str = "hello") -> str:
    body = {"model": "emu-model", "messages": [{"role": "user", "content": prompt}]}
    return json.dumps(
        {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}
    )


async def test_openai_list_pages_newest_first_and_splits_error_file() -> None:
    async with run_emulator(EmulatorConfig()) as emu:
        client = openai.AsyncOpenAI(api_key=SECRET_KEY, base_url=emu.base_url_for("openai"))
        try:
            data = "\n".join([chat_line("ok-1"), '{"custom_id": "bad-1", "body": {}}']).encode()
            upload = await client.files.create(file=("in.jsonl", data), purpose="batch")
            assert upload.purpose == "batch" and upload.bytes == len(data)
            ids = []
            for i in range(3):
                batch = await client.batches.create(
                    input_file_id=upload.id,
                    endpoint="/v1/chat/completions",
                    completion_window="24h",
                    metadata={"n": str(i)},
                )
                ids.append(batch.id)
            listed = [b.id async for b in client.batches.list(limit=2)]
            assert listed == ids[::-1]  # two pages of two and one, newest first

            done = await client.batches.retrieve(ids[0])
            assert done.status == "completed"
            assert done.request_counts is not None
            assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
            assert done.output_file_id and done.error_file_id
            out = (await client.files.content(done.output_file_id)).text.splitlines()
            err = (await client.files.content(done.error_file_id)).text.splitlines()
            assert [json.loads(x)["custom_id"] for x in out] == ["ok-1"]
            bad = json.loads(err[0])
            assert bad["custom_id"] == "bad-1"
            assert bad["response"]["status_code"] == 400
            assert "error" in bad["response"]["body"]
        finally:
            await client.close()


async def test_anthropic_results_url_is_absolute_under_the_mount() -> None:
    async with run_emulator(EmulatorConfig()) as emu:
        client = anthropic.AsyncAnthropic(
            api_key=SECRET_KEY, base_url=emu.base_url_for("anthropic")
        )
        try:
            params: Any = {
                "model": "emu-model",
                "max_tokens": 100,
                "messages": [{"role": "user", "content": "hi"}],
            }
            batch = await client.messages.batches.create(
                requests=[{"custom_id": "a-1", "params": params}]
            )
            assert batch.processing_status == "ended"  # batch_delay_s=0
            assert batch.results_url == (
                f"{emu.base_url_for('anthropic')}/v1/messages/batches/{batch.id}/results"
            )
            results = [r async for r in await client.messages.batches.results(batch.id)]
            assert [r.custom_id for r in results] == ["a-1"]
            assert results[0].result.type == "succeeded"
            result: Any = results[0].result
            assert result.message.usage.service_tier == "batch"
        finally:
            await client.close()


async def test_gemini_root_mount_serves_v1beta_and_leaves_v1_batches_to_openai() -> None:
    async with run_emulator(EmulatorConfig(batch_delay_s=30)) as emu:
        body = {
            "batch": {
                "displayName": "x",
                "inputConfig": {
                    "requests": {
                        "requests": [
                            {
                                "request": {"contents": [{"parts": [{"text": "hi"}]}]},
                                "metadata": {"key": "k1"},
                            }
                        ]
                    }
                },
            }
        }
        async with httpx2.AsyncClient(base_url=emu.root_url) as http:
            created = await http.post("/v1beta/models/emu-model:batchGenerateContent", json=body)
            assert created.status_code == 200
            operation = created.json()
            assert operation["name"].startswith("batches/")
            assert operation["metadata"]["state"] == "BATCH_STATE_RUNNING"
            assert operation["metadata"]["batchStats"]["requestCount"] == "1"
            listed = await http.get("/v1beta/batches")
            assert [op["name"] for op in listed.json()["operations"]] == [operation["name"]]
            openai_list = await http.get("/v1/batches")
            assert openai_list.json()["object"] == "list"
            mounted = await http.get(f"/gemini/v1/{operation['name']}")
            assert mounted.status_code == 200
            realtime = await http.post(
                "/v1beta/models/emu-model:generateContent",
                json={"contents": [{"parts": [{"text": "hi"}]}]},
            )
            assert realtime.status_code == 200 and "candidates" in realtime.json()


def test_batch_delay_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="batch_delay_s"):
        EmulatorConfig(batch_delay_s=-1)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"batch_expire_s": 0}, "batch_expire_s"),
        ({"batch_line_faults": {"500": 0.1}}, "unknown batch line fault"),
        ({"batch_line_fault_schedule": ("ok", "lost")}, "unknown batch line fault"),
        ({"batch_line_faults": {"failed": 0.7, "dropped": 0.4}}, "add up"),
        ({"batch_line_faults": {"400": 1.5}}, r"\[0, 1\]"),
        ({"batch_submit_faults": ("429", "malformed")}, "unknown batch submit fault"),
        ({"batch_truncate_downloads": 0}, "batch_truncate_downloads"),
        ({"batch_truncate_rate": 1.5}, "batch_truncate_rate"),
        ({"batch_truncate_style": "slow"}, "unknown batch_truncate_style"),
    ],
)
def test_bad_batch_fault_settings_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EmulatorConfig(**fields)


def test_line_fault_draws_depend_only_on_seed_job_and_line() -> None:
    config = EmulatorConfig(batch_line_faults={"failed": 0.3, "dropped": 0.3}, seed=7)
    first = BatchFaultPlan(config)
    first.for_new_job("other", 50)  # jobs created in another order draw the same faults
    again = BatchFaultPlan(config).for_new_job("job-a", 50)
    assert first.for_new_job("job-a", 50) == again
    assert set(again.lines) == {None, "failed", "dropped"}
    reseeded = BatchFaultPlan(EmulatorConfig(batch_line_faults=config.batch_line_faults, seed=8))
    assert reseeded.for_new_job("job-a", 50) != again


def test_line_fault_schedule_runs_across_jobs_then_stops() -> None:
    plan = BatchFaultPlan(
        EmulatorConfig(
            batch_line_fault_schedule=("failed", "ok", "dropped"),
            batch_fail_schedule=(False, True),
            batch_truncate_schedule=(True,),
        )
    )
    first, second, third = (plan.for_new_job(f"j{i}", 2) for i in range(3))
    assert (first.lines, second.lines, third.lines) == (
        ("failed", None),
        ("dropped", None),
        (None, None),
    )
    assert [job.fails for job in (first, second, third)] == [False, True, False]
    assert [job.truncated for job in (first, second, third)] == [True, False, False]


def test_a_scheduled_job_has_its_first_downloads_cut_then_whole_ones() -> None:
    plan = BatchFaultPlan(
        EmulatorConfig(batch_truncate_schedule=(True, False), batch_truncate_downloads=2)
    )
    cut, whole = plan.for_new_job("j0", 3), plan.for_new_job("j1", 3)
    assert [plan.cut_download(cut, "output", scheduled=True) for _ in range(4)] == [
        True,
        True,
        False,
        False,
    ]
    assert plan.cut_download(cut, "errors", scheduled=False) is False  # not that file
    assert plan.cut_download(whole, "output", scheduled=True) is False


def test_download_cuts_by_rate_replay_with_the_seed() -> None:
    def cuts(seed: int) -> list[bool]:
        plan = BatchFaultPlan(EmulatorConfig(batch_truncate_rate=0.5, seed=seed))
        jobs = [plan.for_new_job(f"job-{seed}-{i}", 2) for i in range(20)]  # ids differ
        return [plan.cut_download(job, "results", scheduled=True) for job in jobs]

    assert cuts(1) == cuts(1)  # by creation order, not by the (random) job ids
    assert cuts(1) != cuts(2)
    assert 3 <= sum(cuts(1)) <= 17


def test_truncate_cuts_the_last_line_in_half() -> None:
    data = b'{"a": 1}\n{"b": "0123456789"}\n'
    assert truncate(data) == b'{"a": 1}\n{"b": "01'
    assert truncate(b"") == b""


def test_cli_options_set_the_batch_faults() -> None:
    args = build_parser().parse_args(
        [
            "--batch-delay-s=2",
            "--batch-expire-s=1.5",
            "--batch-line-fault=dropped=0.25",
            "--batch-line-schedule=failed,ok,400",
            "--batch-fail-jobs=2,4",
            "--batch-truncate-jobs=1",
            "--batch-truncate-downloads=3",
            "--batch-truncate-rate=0.05",
            "--batch-truncate-style=abort",
            "--batch-submit-faults=429,ok",
        ]
    )
    config = config_from_args(args)
    assert (config.batch_delay_s, config.batch_expire_s) == (2.0, 1.5)
    assert config.batch_line_faults == {"dropped": 0.25}
    assert config.batch_line_fault_schedule == ("failed", "ok", "400")
    assert config.batch_fail_schedule == (False, True, False, True)
    assert config.batch_truncate_schedule == (True,)
    assert (config.batch_truncate_downloads, config.batch_truncate_rate) == (3, 0.05)
    assert config.batch_truncate_style == "abort"
    assert config.batch_submit_faults == ("429", "ok")
