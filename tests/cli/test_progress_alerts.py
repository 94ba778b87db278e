"""On a terminal the live progress table replaces the run log, except for the lines that need
attention: provider errors, pauses, stops and errors still reach the user."""

from __future__ import annotations

import io

from octopipe.cli.progress_view import ProgressView


def test_the_live_view_passes_on_only_the_lines_that_need_attention() -> None:
    stream = io.StringIO()
    with ProgressView(stream, live=True) as view:
        alerts = view.alerts()
        alerts.write("2026-01-01T00:00:00Z [START] run r1 (random_walk), 2 steps\n")
        alerts.write(
            "2026-01-01T00:00:01Z [PROVIDER] report: openai: connection refused: unit a: "
            "not charged (0/3 attempts used); sent again later\n"
        )
        alerts.write("2026-01-01T00:00:02Z [VALIDATE] a @ report: schema: wrong type\n")
        alerts.write("2026-01-01T00:00:03Z [PAUSE] provider unreachable: openai: ...\n")
        alerts.flush()
    shown = stream.getvalue()
    assert "[PROVIDER] report: openai: connection refused: unit a: not charged" in shown
    assert "[PAUSE] provider unreachable" in shown
    assert "[START]" not in shown and "[VALIDATE]" not in shown
