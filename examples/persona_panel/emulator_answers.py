"""Answers for rehearsing this pipeline on the local emulator, used only when named:
`octopipe run examples/persona_panel --provider fake --answers examples/persona_panel/emulator_answers.py`.

Writes a short message for the `write` step and scores it for the `judge` step; some scores
fall under the 0.6 threshold, so a rehearsal shows those units being sent back.
"""

import random
import re

_draws = random.Random()

_OPENERS = ["Listen,", "Well,", "Honestly,", "Look,", "So,"]


def answer(request):
    if "Write a message" in request.prompt:
        who = re.search(r"You are a ([^.]+)\.", request.prompt)
        mood = re.search(r"you feel (\w+)", request.prompt)
        topic = re.search(r"words about (.+?), in your voice", request.prompt)
        message = (
            f"{_draws.choice(_OPENERS)} as a {who.group(1) if who else 'speaker'} "
            f"feeling {mood.group(1) if mood else 'fine'}, I keep thinking about "
            f"{topic.group(1) if topic else 'this'} and what it says about the day."
        )
        return {"message": message, "tone": _draws.choice(["warm", "neutral", "sharp"])}
    if "Score from 0 to 1" in request.prompt:
        persona = round(_draws.uniform(0.45, 1.0), 2)
        mood = round(_draws.uniform(0.5, 1.0), 2)
        notes = "" if persona >= 0.8 else "the voice drifts in the second half"
        return {"persona_fit": persona, "mood_fit": mood, "notes": notes}
    return None
