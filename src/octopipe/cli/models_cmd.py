"""``octopipe models``: the registry's providers, models, prices and limits."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from octopipe.cli.output import console, print_json
from octopipe.core.costs import effective_rates, price_summary
from octopipe.core.registry import ModelInfo, Registry, load_registry
from octopipe.errors import EXIT_OK


@click.command()
@click.option("--provider", "provider", metavar="P", help="Show only this provider.")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def models(provider: str | None, as_json: bool) -> int:
    """List the model registry: prices in USD per million tokens (realtime input, cached
    input, output; batch input, output), the default provider and models, and the limits.

    rpm/tpm are defaults from the vendors' lowest paid tier; set api.rpm/api.tpm (or --rpm/
    --tpm) for your account. A model not listed here has an unknown cost.
    """
    registry = load_registry()
    if provider is not None:
        registry.provider(provider)  # an unknown name is a usage error listing the known ones
    names = registry.providers() if provider is None else (provider,)
    if as_json:
        print_json(_as_data(registry, names))
    else:
        _print_tables(registry, names)
    return EXIT_OK


# --- JSON -------------------------------------------------------------------------------------


def _as_data(registry: Registry, names: tuple[str, ...]) -> dict[str, Any]:
    return {
        "default_provider": registry.default_provider,
        "providers": [_provider_data(registry, name) for name in names],
    }


def _provider_data(registry: Registry, name: str) -> dict[str, Any]:
    entry = registry.provider(name)
    limits = registry.limits(name)
    return {
        "provider": name,
        "default": name == registry.default_provider,
        "default_model": entry.default_model,
        "api_key_env": list(entry.api_key_env),
        "batch_discount": entry.batch_discount,
        "mirrors": list(entry.mirrors),
        "limits": {**limits.__dict__, "basis": entry.limits.basis},
        "note": entry.note,
        "models": [_model_data(registry, name, info) for info in _rows(registry, name)],
    }


def _model_data(registry: Registry, provider: str, info: ModelInfo) -> dict[str, Any]:
    limits = registry.limits(provider, info.name)
    return {
        "model": info.name,
        "aliases": list(info.aliases),
        "priced_as": info.vendor,
        "default": info.name == registry.default_model(provider)
        or registry.default_model(provider) in info.aliases,
        **price_summary(info),
        "limits": {"rpm": limits.rpm, "tpm": limits.tpm},
        "checked": info.checked.isoformat(),
        "source": info.source,
        "note": info.note,
    }


def _rows(registry: Registry, provider: str) -> list[ModelInfo]:
    """The provider's own models; a mirroring provider shows its default model's entry."""
    rows = list(registry.models(provider))
    default = registry.default_model(provider)
    if not rows and default is not None:
        info = registry.model(provider, default)
        rows = [] if info is None else [info]
    return rows


# --- tables -----------------------------------------------------------------------------------

_COLUMNS = ("model", "", "in", "cached", "out", "batch in", "batch out", "rpm", "tpm")


def _print_tables(registry: Registry, names: tuple[str, ...]) -> None:
    console.print(
        "Prices in USD per million tokens (in, cached input, out; batch in, out). "
        "* = default model."
    )
    for name in names:
        console.print()
        console.print(_provider_line(registry, name), markup=False)
        rows = _rows(registry, name)
        if not rows:
            console.print("  no priced models: the cost of runs here is unknown")
            continue
        table = Table(box=None, pad_edge=False, collapse_padding=True, show_edge=False)
        for column in _COLUMNS:
            table.add_column(column, justify="left" if column == "model" else "right", no_wrap=True)
        default = registry.default_model(name)
        for info in rows:
            table.add_row(*_model_cells(registry, name, info, default))
        console.print(table)
    console.print()
    console.print(
        f"default provider: {registry.default_provider}. rpm/tpm are defaults from "
        "the vendors' lowest paid tier: set api.rpm/api.tpm (or --rpm/--tpm) for "
        "your account. A model not listed has an unknown cost."
    )


def _provider_line(registry: Registry, name: str) -> str:
    entry = registry.provider(name)
    limits = registry.limits(name)
    parts = [
        f"key {' or '.join(entry.api_key_env) or '(none needed)'}",
        f"default model {entry.default_model or '(none: name one)'}",
    ]
    if entry.mirrors:
        parts.append(f"models and prices of {', '.join(entry.mirrors)}")
    elif entry.batch_discount is not None:
        parts.append(f"batch at {entry.batch_discount:.0%} of realtime")
    batch = [
        f"{_count(limits.batch_max_requests)} requests" if limits.batch_max_requests else "",
        f"{_bytes(limits.batch_max_bytes)}" if limits.batch_max_bytes else "",
    ]
    if any(batch):
        parts.append("batch max " + " / ".join(b for b in batch if b))
    title = name + (" (default provider)" if name == registry.default_provider else "")
    return f"{title}: " + "; ".join(parts)


def _model_cells(
    registry: Registry, provider: str, info: ModelInfo, default: str | None
) -> list[str]:
    realtime = effective_rates(info, "realtime")
    batch = effective_rates(info, "batch")
    limits = registry.limits(provider, info.name)
    label = info.name if info.vendor == provider else f"{info.name} (as {info.vendor})"
    is_default = default == info.name or default in info.aliases
    return [
        label,
        "*" if is_default else "",
        _rate(realtime.input if realtime else None),
        _rate(realtime.cached if realtime else None),
        _rate(realtime.output if realtime else None),
        _rate(batch.input if batch else None),
        _rate(batch.output if batch else None),
        _short(limits.rpm),
        _short(limits.tpm),
    ]


def _rate(value: float | None) -> str:
    """A price exactly as listed: at least cents, up to six decimals, no rounding to show."""
    if value is None:
        return "-"
    whole, _, decimals = f"{value:.6f}".partition(".")
    return f"${whole}.{decimals.rstrip('0').ljust(2, '0')}"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _short(value: int | None) -> str:
    """500, 30k, 4M: limits at a glance (exact values are in --json)."""
    if value is None:
        return "-"
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if value >= size and value % (size // 10) == 0:
            return f"{value / size:g}{suffix}"
    return f"{value:,}"


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e9:g} GB" if value >= 1e9 else f"{value / 1e6:g} MB"
