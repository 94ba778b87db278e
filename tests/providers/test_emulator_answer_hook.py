"""The emulator's answer hook: loaded only from a file the user names, never looked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from octopipe.emulator import EmulatorRequest, default_answer
from octopipe.emulator.answers import load_answer_hook
from octopipe.emulator.cli import build_parser, config_from_args, main
from octopipe.errors import AnswerHookError

SCHEMA = {"type": "object", "properties": {"verdict": {"type": "string"}}}


def request(prompt: str) -> EmulatorRequest:
    return EmulatorRequest("openai", "chat", "gpt-4o-mini", prompt, schema=SCHEMA)


def hook_file(tmp_path: Path, body: str, name: str = "answers.py") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def test_a_named_hook_answers_and_none_falls_back_to_the_schema_shaped_answer(
    tmp_path: Path,
) -> None:
    path = hook_file(
        tmp_path,
        "def answer(request):\n"
        "    return {'verdict': 'yes'} if 'ask' in request.prompt else None\n",
    )
    answer = load_answer_hook(path)

    assert answer(request("ask me")) == {"verdict": "yes"}
    assert answer(request("other")) == default_answer(request("other"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("x = 1\n", "defines no answer(request) function"),
        ("answer = 42\n", "defines no answer(request) function"),
        ("raise RuntimeError('boom')\n", "importing it raised RuntimeError: boom"),
        ("def answer(:\n", "importing it raised SyntaxError"),
    ],
)
def test_an_unusable_hook_file_is_a_named_error(tmp_path: Path, body: str, message: str) -> None:
    path = hook_file(tmp_path, body)
    with pytest.raises(AnswerHookError) as raised:
        load_answer_hook(path)
    assert raised.value.message.startswith(f"{path}: {message}")
    assert raised.value.exit_code == 2


def test_emulator_command_uses_the_hook_it_is_given(tmp_path: Path) -> None:
    path = hook_file(tmp_path, "def answer(request):\n    return 'from the hook'\n")
    config = config_from_args(build_parser().parse_args(["--answers", str(path)]))

    assert config.answer_fn is not None
    assert config.answer_fn(request("x")) == "from the hook"


def test_emulator_command_never_looks_for_a_hook_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "marker"
    hook_file(tmp_path, f"open({str(marker)!r}, 'w')\n", name="emulator_answers.py")
    monkeypatch.chdir(tmp_path)
    config = config_from_args(build_parser().parse_args([]))

    assert config.answer_fn is None
    assert not marker.exists()


@pytest.mark.parametrize(
    ("setup", "message"),
    [("missing", "no such file"), ("no answer", "defines no answer(request) function")],
)
def test_emulator_command_refuses_a_bad_answers_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, message: str
) -> None:
    path = tmp_path / "answers.py"
    if setup == "no answer":
        path.write_text("x = 1\n")
    with pytest.raises(SystemExit) as exited:
        main(["--answers", str(path)])
    assert exited.value.code == 2
    assert f"--answers {path}: {message}" in capsys.readouterr().err
