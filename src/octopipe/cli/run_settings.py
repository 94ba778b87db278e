"""Settings a run is started or resumed with: provider, model, server, cost cap, mode, flex,
and the ``--timeout`` duration.

Guarantees: a resume is checked against what the run recorded (its snapshot, not the source
folder) before anything changes; a switch (mode, provider, model, server, cap) is recorded on
the run; a cap set earlier holds until a new ``--max-cost`` replaces it; ``--flex`` with a
batch run and ``--flex-fallback`` without ``--flex`` are refused, not ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from octopipe.cli.output import console
from octopipe.core.amounts import format_usd
from octopipe.core.config import load_pipeline
from octopipe.engine.control import update_settings
from octopipe.engine.paths import RunPaths
from octopipe.engine.preflight import check_provider_settings
from octopipe.engine.queries import RunInfo
from octopipe.errors import UsageError


@dataclass(frozen=True)
class Settings:
    """Provider settings given on the command line (``None``: not given)."""

    provider: str | None
    model: str | None
    base_url: str | None
    max_cost: float | None


def check_flex(mode: str, flex: bool | None, fallback: str | None) -> None:
    """Flex is a realtime tier: ``--flex`` with a batch run is refused, not ignored."""
    if flex and mode == "batch":
        raise UsageError(
            "--flex is a realtime tier (OpenAI's service_tier flex); a batch run is already "
            "priced at batch rates: give one of --flex and --batch"
        )
    if fallback is not None and not flex:
        raise UsageError("--flex-fallback applies to a run with --flex")


def check_resume(
    paths: RunPaths,
    stored: RunInfo,
    mode: str | None,
    given: Settings,
    *,
    flex: bool | None = None,
) -> None:
    """What ``check_provider_settings`` refuses, for a run about to resume with these flags
    over what it recorded (its snapshot, not the source folder)."""
    cap = given.max_cost if given.max_cost is not None else stored.options.get("max_cost_usd")
    check_provider_settings(
        load_pipeline(paths.config_dir),
        mode=(mode or stored.mode),  # type: ignore[arg-type]
        provider=given.provider or stored.provider,
        model=given.model or stored.model,
        base_url=given.base_url,
        recorded_base_url=stored.options.get("base_url"),
        max_cost_usd=None if cap is None else float(cap),
        flex=flex,
    )


def settle_settings(
    paths: RunPaths, stored: RunInfo, mode: str | None, max_cost: float | None, given: Settings
) -> tuple[str, float | None]:
    """Record a mode switch, a new cost cap, a new server address or a provider/model given on
    resume; return the mode and the cap that apply now (a cap set earlier holds until a new
    ``--max-cost`` changes it)."""
    keep: dict[str, object] = {}
    if max_cost is not None:
        keep["max_cost_usd"] = max_cost
    if given.base_url is not None and given.base_url != stored.options.get("base_url"):
        keep["base_url"] = given.base_url
    provider = given.provider if given.provider not in (None, stored.provider) else None
    model = given.model if given.model not in (None, stored.model) else None
    switch = mode if mode is not None and mode != stored.mode else None
    if switch or keep or provider or model:
        update_settings(paths, mode=switch, options=keep or None, provider=provider, model=model)
    if max_cost is None and stored.options.get("max_cost_usd") is not None:
        max_cost = float(stored.options["max_cost_usd"])
        console.print(
            f"cost cap {format_usd(max_cost)} (set earlier; --max-cost changes it)", markup=False
        )
    return mode or stored.mode, max_cost


def parse_timeout(text: str) -> float:
    """``--timeout``: a duration longer than zero (``0`` is refused: it cannot mean "no
    limit" silently, and a run paused before it starts is of no use)."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise UsageError(f"--timeout {text!r}: give a duration longer than 0 s, e.g. 90s or 30m")
    return seconds


def parse_duration(text: str) -> float:
    """``90`` or ``90s`` -> 90; ``30m``; ``2h``; ``1h30m`` -> seconds."""
    parts = re.fullmatch(r"\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s?)?\s*", text)
    if not text.strip() or parts is None or not any(parts.groups()):
        raise UsageError(f"cannot read duration {text!r}: use e.g. 90s, 30m, 2h, 1h30m")
    hours, minutes, seconds = (int(g) if g else 0 for g in parts.groups())
    return float(hours * 3600 + minutes * 60 + seconds)
