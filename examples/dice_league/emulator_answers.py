"""Answers for rehearsing this pipeline on the local emulator, used only when named:
`octopipe run examples/dice_league --provider fake --answers examples/dice_league/emulator_answers.py`.

Reads the dice from the prompt and calls the game by the league's rule. The first time it sees
a game, now and then (chosen by the prompt) it misreads the total, so the rules catch it and the
retry gets it right.
"""

import hashlib
import re

_seen = set()


def answer(request):
    found = re.search(r"rolled (\d+) dice: \[([0-9, ]+)\]", request.prompt)
    if not found:
        return None
    count, dice = int(found.group(1)), [int(d) for d in found.group(2).split(",")]
    total = sum(dice)
    call = "hot" if total >= 4 * count else "cold" if total <= 2 * count else "steady"
    seen = total
    first = request.prompt not in _seen
    _seen.add(request.prompt)
    if first and hashlib.sha256(request.prompt.encode()).digest()[0] % 5 == 0:
        seen = total + 1  # misread
    return {"call": call, "line": f"{count} dice, {total} in all: {call} game!", "total_seen": seen}
