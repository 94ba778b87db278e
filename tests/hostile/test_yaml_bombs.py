"""A pipeline whose YAML is built to explode (alias bombs, recursive aliases) or to mislead
(duplicate keys) is refused with the file and the line, quickly, before anything is created."""

from __future__ import annotations

import pytest

from support.hostile import Sandbox


def laughs(levels: int = 10) -> str:
    lines = ['lol0: &lol0 ["ha", "ha", "ha", "ha", "ha", "ha", "ha", "ha", "ha"]']
    for level in range(1, levels):
        lines.append(f"lol{level}: &lol{level} [" + ", ".join([f"*lol{level - 1}"] * 9) + "]")
    return "\n".join(lines)


def indented(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())


def line_in(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def assert_refused(sandbox: Sandbox, file: str, line: int, message: str) -> None:
    """validate, try and run all refuse the folder, naming ``file:line``, and create nothing."""
    results = [
        sandbox.octopipe("validate", sandbox.pipeline, timeout=30),
        sandbox.octopipe("try", sandbox.pipeline, "--unit", "a", timeout=30),
        sandbox.octopipe(
            "run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "x", timeout=30
        ),
    ]
    for result in results:
        assert result.code == 2, result
        assert f"{file}:{line}" in result.err, result
        assert message in result.err, result
        assert result.err.count(message) == 1, result
        assert "Traceback" not in result.text, result
        assert result.seconds < 20, result
    assert not (sandbox.runs / "x").exists()
    sandbox.assert_contained(*results)


def test_alias_bomb_in_the_config_is_refused(sandbox: Sandbox) -> None:
    sandbox.edit_config(
        "prompts:\n", "prompts:\n  global_context:\n" + indented(laughs(), 4) + "\n"
    )
    text = (sandbox.pipeline / "config.yaml").read_text()
    assert_refused(sandbox, "config.yaml", line_in(text, "lol5:"), "aliases expand to more than")


def test_recursive_alias_in_the_config_is_refused(sandbox: Sandbox) -> None:
    sandbox.edit_config(
        "prompts:\n", "prompts:\n  global_context:\n    loop: &me\n      - 1\n      - *me\n"
    )
    text = (sandbox.pipeline / "config.yaml").read_text()
    assert_refused(
        sandbox,
        "config.yaml",
        line_in(text, "- *me"),
        f"recursive alias *me: the value anchored on line {line_in(text, '&me')} contains itself",
    )


def test_alias_bomb_in_the_items_is_refused(sandbox: Sandbox) -> None:
    text = laughs() + "\nitems:\n  - {name: a, value: 1, blob: *lol9}\n"
    sandbox.write("items.yaml", text)
    assert_refused(sandbox, "items.yaml", line_in(text, "lol5:"), "aliases expand to more than")


def test_recursive_alias_in_the_items_is_refused(sandbox: Sandbox) -> None:
    sandbox.write("items.yaml", "items:\n  - &r {name: a, value: 1, self: [*r]}\n")
    assert_refused(
        sandbox, "items.yaml", 2, "recursive alias *r: the value anchored on line 2 contains itself"
    )


@pytest.mark.parametrize(
    ("file", "old", "new", "line", "message"),
    [
        (
            "config.yaml",
            "  chunk_size: 10\n",
            "  chunk_size: 10\n  chunk_size: 5\n",
            18,
            "duplicate key 'chunk_size' (first on line 17)",
        ),
        (
            "items.yaml",
            "  - {name: b, value: 2}\n",
            "  - {name: b, value: 2, value: 20}\n",
            3,
            "duplicate key 'value' (first on line 3)",
        ),
    ],
)
def test_duplicate_keys_are_refused_naming_both_lines(
    sandbox: Sandbox, file: str, old: str, new: str, line: int, message: str
) -> None:
    path = sandbox.pipeline / file
    path.write_text(path.read_text().replace(old, new, 1))
    assert_refused(sandbox, file, line, message)
