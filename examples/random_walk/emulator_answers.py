"""Answers for rehearsing this pipeline on the local emulator, used only when named:
`octopipe run examples/random_walk --provider fake --answers examples/random_walk/emulator_answers.py`.

Reads the walk from the prompt and reports it, the way a careful model would. About one answer
in ten miscounts the moves, so a rehearsal also shows a rule catching a wrong answer and the
unit being retried.
"""

import random
import re

_mistakes = random.Random()


def answer(request):
    match = re.search(r"in order:\n([0-9, ]+)", request.prompt)
    if match is None:
        return None
    trail = [int(x) for x in match.group(1).split(",")]
    moves = len(trail) - 1
    if _mistakes.random() < 0.1:
        moves += 1
    end = trail[-1]
    return {"end_square": end, "move_count": moves, "ending": "home" if end >= 10 else "lost"}
