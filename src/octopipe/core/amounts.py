"""How an amount of money is written for people: the one formatter every view uses.

Kept apart from ``core/costs.py`` (which prices usage and imports the price schema) so a view
that only shows amounts -- ``status``, ``ps`` -- does not pay for loading it.
"""

from __future__ import annotations

import math


def format_usd(value: float | None) -> str:
    """``None`` -> ``"unknown"``; dollars and cents from $1 (``$1,856.20``); below $1, three
    significant digits and at least cents (``$0.42``, ``$0.125``, ``$0.0042``);
    ``<$0.000001`` for dust."""
    if value is None:
        return "unknown"
    sign, amount = ("-", -value) if value < 0 else ("", value)
    if amount == 0:
        return "$0.00"
    if amount >= 1:
        return f"{sign}${amount:,.2f}"
    if amount < 1e-6:
        return f"{sign}<$0.000001"
    decimals = max(2, 2 - math.floor(math.log10(amount)))
    text = f"{amount:.{decimals}f}"
    if float(text) >= 1:  # 0.999 rounds up to 1.0
        return f"{sign}${amount:,.2f}"
    whole, _, cents = text.partition(".")
    cents = cents.rstrip("0").ljust(2, "0")  # $0.050 -> $0.05, but $0.10 stays
    return f"{sign}${whole}.{cents}"
