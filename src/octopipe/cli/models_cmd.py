"""``octopipe models``: the models octopipe can price today, their prices by tier, where the
prices come from, and the registry's limits."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime
from typing import Any

import click
from rich.table import Table

from octopipe.cli.output import console, print_json
from octopipe.core import price_db
from octopipe.core.costs import TIERS, Rates, TieredRates
from octopipe.core.registry import Registry
from octopipe.engine.prices import price_registry, snapshot_file
from octopipe.errors import EXIT_OK, UsageError

REFRESH_TIMEOUT_S = 20


@click.command()
@click.option("--provider", "provider", metavar="P", help="Show only this provider.")
@click.option("--json", "as_json", is_flag=True, help="Print models, prices and limits as JSON.")
@click.option(
    "--refresh",
    is_flag=True,
    help="Fetch the newest price database (genai-prices' published data) and keep it for "
    "later runs (needs the network).",
)
def models(provider: str | None, as_json: bool, refresh: bool) -> int:
    """List the models octopipe can price today: USD per million tokens in each tier
    (standard, batch, flex, priority: input, cached input, output), the price source and its
    version, the default models and the limits.

    Prices come from the genai-prices database, then ~/.config/octopipe/prices.yaml (which
    overrides or adds). rpm/tpm are defaults from the vendors' lowest paid tier; set
    api.rpm/api.tpm (or --rpm/--tpm) for your account. A model not listed has an unknown cost.
    """
    if refresh:
        _refresh()
    registry = price_registry()
    if provider is not None:
        registry.provider(provider)  # an unknown name is a usage error listing the known ones
    names = registry.providers() if provider is None else (provider,)
    if as_json:
        print_json(_as_data(registry, names))
    else:
        _print_tables(registry, names)
    return EXIT_OK


def _refresh() -> None:
    from genai_prices.types import _providers_from_raw
    from genai_prices.update_prices import DEFAULT_UPDATE_URL

    try:
        with urllib.request.urlopen(DEFAULT_UPDATE_URL, timeout=REFRESH_TIMEOUT_S) as answer:
            raw = json.loads(answer.read())
        _providers_from_raw(raw)
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"could not refresh prices from {DEFAULT_UPDATE_URL}: {exc}") from None
    target = snapshot_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    fetched = datetime.now(UTC).isoformat(timespec="seconds")
    temp = target.with_suffix(".tmp")
    temp.write_text(json.dumps({"fetched_at": fetched, "providers": raw}), encoding="utf-8")
    temp.replace(target)
    price_db.use_snapshot_file(target)
    console.print(f"prices refreshed ({len(raw)} providers) into {target}", markup=False)


# --- what is listed ---------------------------------------------------------------------------


def _model_names(registry: Registry, provider: str) -> list[tuple[str, str]]:
    """(model, vendor whose prices apply) of every model ``provider`` can price: the price
    files', the registry's, and the database's current (not deprecated) token-priced ones."""
    out: dict[str, str] = {}
    default = registry.default_model(provider)
    if registry.provider(provider).mirrors:  # the emulator: any vendor model; show its default
        info = None if default is None else registry.model(provider, default)
        return [] if info is None or default is None else [(default, info.vendor)]
    for vendor in registry.price_vendors(provider):
        for prov, model in registry.overrides.models:
            if prov == vendor:
                out.setdefault(model, vendor)
        for info in registry.models(vendor):
            out.setdefault(info.name, vendor)
        for db_model in price_db.database_models(registry.database_id(vendor)):
            if db_model.deprecated or db_model.id in out:
                continue
            if registry.rates(vendor, db_model.id, "standard") is not None:
                out.setdefault(db_model.id, vendor)
    return list(out.items())


def _tier_data(rates: TieredRates | None) -> dict[str, Any] | None:
    if rates is None:
        return None

    def one(r: Rates) -> dict[str, float]:
        return {
            "input": r.input,
            "cached_input": r.cached,
            "cache_write": r.write,
            "output": r.output,
        }

    return {
        **one(rates.base),
        "above_input_tokens": [{"above": start, **one(r)} for start, r in rates.above],
        "source": rates.source,
    }


# --- JSON -------------------------------------------------------------------------------------


def _as_data(registry: Registry, names: tuple[str, ...]) -> dict[str, Any]:
    return {
        "default_provider": registry.default_provider,
        "price_database": price_db.database_version(),
        "price_files": list(registry.overrides.files),
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
        "models": [_model_data(registry, name, m, v) for m, v in _model_names(registry, name)],
    }


def _model_data(registry: Registry, provider: str, model: str, vendor: str) -> dict[str, Any]:
    info = registry.model(vendor, model)
    limits = registry.limits(vendor, model) if vendor == provider else registry.limits(provider)
    default = registry.default_model(provider)
    return {
        "model": model,
        "aliases": list(info.aliases) if info else [],
        "priced_as": vendor,
        "default": default == model or (info is not None and default in info.aliases),
        "prices_usd_per_mtok": {t: _tier_data(registry.rates(vendor, model, t)) for t in TIERS},
        "limits": {"rpm": limits.rpm, "tpm": limits.tpm},
        "checked": info.checked.isoformat() if info else None,
        "source": info.source if info else None,
        "note": info.note if info else None,
    }


# --- tables -----------------------------------------------------------------------------------

_COLUMNS = ("model", "", "in", "cached", "out", "batch in", "batch out", "flex in", "flex out")


def _print_tables(registry: Registry, names: tuple[str, ...]) -> None:
    files = ", ".join(registry.overrides.files) or "none"
    console.print(
        f"Prices: {price_db.database_version()}; price files: {files}. USD per million "
        "tokens (standard in, cached input, out; batch in, out; flex in, out). * = default model.",
        markup=False,
    )
    for name in names:
        console.print()
        console.print(_provider_line(registry, name), markup=False)
        rows = _model_names(registry, name)
        if not rows:
            console.print("  no priced models: the cost of runs here is unknown")
            continue
        table = Table(box=None, pad_edge=False, collapse_padding=True, show_edge=False)
        for column in _COLUMNS:
            table.add_column(column, justify="left" if column == "model" else "right", no_wrap=True)
        default = registry.default_model(name)
        for model, vendor in rows:
            table.add_row(*_model_cells(registry, name, model, vendor, default))
        console.print(table)
    console.print()
    console.print(
        f"default provider: {registry.default_provider}. rpm/tpm defaults: `octopipe models "
        "--json`; set api.rpm/api.tpm (or --rpm/--tpm) for your account. A model not listed "
        "has an unknown cost; add one in ~/.config/octopipe/prices.yaml.",
        markup=False,
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
    batch = [
        f"{_count(limits.batch_max_requests)} requests" if limits.batch_max_requests else "",
        f"{_bytes(limits.batch_max_bytes)}" if limits.batch_max_bytes else "",
    ]
    if any(batch):
        parts.append("batch max " + " / ".join(b for b in batch if b))
    if limits.rpm or limits.tpm:
        parts.append(f"default rpm {_short(limits.rpm)} / tpm {_short(limits.tpm)}")
    title = name + (" (default provider)" if name == registry.default_provider else "")
    return f"{title}: " + "; ".join(parts)


def _model_cells(
    registry: Registry, provider: str, model: str, vendor: str, default: str | None
) -> list[str]:
    info = registry.model(vendor, model)
    standard = registry.rates(vendor, model, "standard")
    batch = registry.rates(vendor, model, "batch")
    flex = registry.rates(vendor, model, "flex")
    label = model if vendor == provider else f"{model} (as {vendor})"
    is_default = default == model or (info is not None and default in info.aliases)

    def cell(rates: TieredRates | None, field: str) -> str:
        if rates is None:
            return "-"
        value = getattr(rates.base, field)
        return _rate(value) + ("+" if rates.above else "")

    return [
        label,
        "*" if is_default else "",
        cell(standard, "input"),
        cell(standard, "cached"),
        cell(standard, "output"),
        cell(batch, "input"),
        cell(batch, "output"),
        cell(flex, "input"),
        cell(flex, "output"),
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
