"""Answers for rehearsing this pipeline on the local emulator, used only when named:
`octopipe run examples/card_game --provider fake --answers examples/card_game/emulator_answers.py`.

Plays the hand from the prompt by the strategy's rule. Now and then it makes the mistakes a
model makes (adds up wrongly, draws one card too many), so a rehearsal shows the check steps
failing those hands.
"""

import random
import re

_mistakes = random.Random()


def _numbers(text):
    return [int(x) for x in re.findall(r"\d+", text)]


def answer(request):
    opening = re.search(r"Your opening cards: ([0-9, ]+) \(", request.prompt)
    pile = re.search(r"top card first: ([0-9, ]+)\.", request.prompt)
    stop = re.search(r"below (\d+), then stop", request.prompt)
    if not (opening and pile and stop):
        return None
    hand, pile_cards, stop_at = (
        _numbers(opening.group(1)),
        _numbers(pile.group(1)),
        int(stop.group(1)),
    )
    drawn = 0
    while drawn < len(pile_cards) and sum(hand) + sum(pile_cards[:drawn]) < stop_at:
        drawn += 1
    slip = _mistakes.random()
    if slip < 0.05 and drawn < len(pile_cards):
        drawn += 1  # ignores the strategy
    total = sum(hand) + sum(pile_cards[:drawn])
    if 0.05 <= slip < 0.1:
        total += 1  # miscounts
    moves = [f"draw {card}" for card in pile_cards[:drawn]] + ["stop"]
    return {"cards_drawn": drawn, "final_total": total, "busted": total > 19, "moves": moves}
