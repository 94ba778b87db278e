"""``report`` and ``compare`` show what a pipeline or a model wrote -- field values, error
messages -- as text: rich markup is not interpreted, terminal escapes (ESC, BEL) are shown as
``\\x1b`` instead of being sent to the terminal, and Markdown gets no live link, image or HTML,
so a report pasted into an issue fetches nothing. Bad requests are refused with a message."""

from __future__ import annotations

import json
import re

from support.hostile import Sandbox

RULE = """validation:
  score:
    rules:
      - name: small
        expr: "value < 2"
        error: "too big: {note}"
"""


def hostile(sandbox: Sandbox) -> str:
    url = sandbox.canary_server.url
    note = (
        f"[link={url}/markup]x[/link] [bold red]boom[/] "
        f"\\e]8;;{url}/osc\\aclick\\e]8;;\\a \\e[2J ![p]({url}/img.png) <img src={url}/h>"
    )
    sandbox.write(
        "items.yaml",
        "items:\n"
        '  - {name: a, value: 1, note: "fine"}\n'
        f'  - {{name: b, value: 2, note: "{note}"}}\n'
        f'  - {{name: c, value: 3, note: "{note}"}}\n',
    )
    sandbox.edit_config("validation:\n", RULE)
    return url


def test_hostile_values_and_messages_are_shown_as_text(sandbox: Sandbox) -> None:
    url = hostile(sandbox)
    ran = sandbox.octopipe("run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "h")
    assert ran.code == 0, ran
    text = sandbox.octopipe("report", "h", "--failures-by", "note", timeout=30)
    markdown = sandbox.octopipe("report", "h", "--markdown", "--failures-by", "note", timeout=30)
    as_json = sandbox.octopipe("report", "h", "--json", "--failures-by", "note", timeout=30)
    compared = sandbox.octopipe("compare", "h", "h", "--markdown", timeout=30)
    results = (text, markdown, as_json, compared)
    for result in results:
        assert result.code == 0, result
        assert result.seconds < 30
        assert "\x1b" not in result.out and "\x07" not in result.out, result
    # the terminal view: markup kept as typed, escapes made visible
    assert f"[link={url}/markup]x[/link] [bold red]boom[/]" in text.out, text
    assert f"\\x1b]8;;{url}/osc\\x07click" in text.out and "\\x1b[2J" in text.out
    assert "too big: [link=" in text.out  # the error message, grouped but not interpreted
    # Markdown: nothing that renders as a link, an image or HTML
    for live in (r"(?<!\\)!(?<!\\)\[", r"(?<!\\)<img", r"(?<!\\)\[link="):
        assert not re.search(live, markdown.out), (live, markdown.out)
    assert "\\[link=" in markdown.out
    assert "\\!\\[p\\](" in markdown.out and "\\<img src=" in markdown.out
    # JSON: the values as they are, escaped by JSON
    data = json.loads(as_json.out)
    score = data["steps"][0]
    values = {row["value"] for row in score["failures_by"]}
    assert any(isinstance(v, str) and "\x1b]8;;" in v and "\x07" in v for v in values)
    assert score["failed"] == 2 and score["errors"][0]["units"] == 2
    assert score["errors"][0]["samples"] == ["b", "c"]
    sandbox.assert_contained(ran, *results)


def test_a_report_on_something_that_is_not_a_run_is_refused(sandbox: Sandbox) -> None:
    (sandbox.runs / "junk").mkdir(parents=True)
    (sandbox.runs / "junk" / "ledger.db").write_text("not a ledger\n" * 100)
    results = [
        sandbox.octopipe("report", "junk", timeout=30),
        sandbox.octopipe("report", "missing", timeout=30),
        sandbox.octopipe("compare", "junk", "missing", timeout=30),
    ]
    junk, missing, compared = results
    assert junk.code == 4 and "is not a SQLite database" in junk.err, junk
    assert missing.code == 2 and "no run named 'missing'" in missing.err, missing
    assert compared.code in (2, 4) and "Traceback" not in compared.text, compared
    for result in results:
        assert result.out == "" and "Traceback" not in result.err
    sandbox.assert_contained(*results)
