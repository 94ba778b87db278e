"""Unit generation: strategies, Octobatch id conventions, repeat, duplicates, streaming, fan-out."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from octopipe.core import units as units_module
from octopipe.core.config_models import ProcessingSpec
from octopipe.core.units import Unit, count_units, fan_out_children, iter_units
from octopipe.errors import ConfigError, ConfigProblem, UsageError


def spec(strategy: str, **items: Any) -> ProcessingSpec:
    positions = items.pop("positions", [])
    repeat = items.pop("repeat", 1)
    return ProcessingSpec.model_validate(
        {
            "strategy": strategy,
            "items": {"source": "items", **items},
            "positions": positions,
            "repeat": repeat,
        }
    )


def write_yaml(folder: Path, data: Any, name: str = "items.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def write_jsonl(folder: Path, rows: list[Any], name: str = "items.jsonl") -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def ids(units: Any) -> list[str]:
    return [unit.id for unit in units]


def problem_of(excinfo: pytest.ExceptionInfo[ConfigError]) -> ConfigProblem:
    assert len(excinfo.value.problems) == 1
    return excinfo.value.problems[0]


def octobatch_seed(base_id: str, repetition: int) -> int:
    """The value Octobatch stores: int(hexdigest) masked to 31 bits, plus the index."""
    return (int(hashlib.sha256(base_id.encode()).hexdigest(), 16) & 0x7FFFFFFF) + repetition


# --- direct -------------------------------------------------------------------------------------


def test_direct_flattens_item_keys_into_the_unit(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        {"strategies": [{"name": "Pro", "rules": "hit below 17"}, {"name": "Coward", "x": 1}]},
    )
    units = list(iter_units(spec("direct", key="strategies"), path))
    assert units == [
        Unit("Pro", {"unit_id": "Pro", "name": "Pro", "rules": "hit below 17"}),
        Unit("Coward", {"unit_id": "Coward", "name": "Coward", "x": 1}),
    ]


def test_direct_id_falls_back_from_name_field_to_id_to_name_and_is_sanitized(
    tmp_path: Path,
) -> None:
    rows = [
        {"code": "big fish/small pond", "id": "ignored"},
        {"id": 7, "name": "ignored"},
        {"name": "plain name"},
        {"code": "", "id": None, "name": "empty code"},
        {"code": 2.5},
        {"code": "x", "unit_id": "stale"},
    ]
    path = write_jsonl(tmp_path, rows)
    units = list(iter_units(spec("direct", name_field="code"), path))
    assert ids(units) == ["big_fish-small_pond", "7", "plain_name", "empty_code", "2.5", "x"]
    assert units[5].fields == {"unit_id": "x", "code": "x"}


def test_direct_csv_items_are_typed_fields(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("name,start,ratio\nnear shore,5,0.5\nfar/out,9,1\n", encoding="utf-8")
    units = list(iter_units(spec("direct"), path))
    assert units == [
        Unit(
            "near_shore", {"unit_id": "near_shore", "name": "near shore", "start": 5, "ratio": 0.5}
        ),
        Unit("far-out", {"unit_id": "far-out", "name": "far/out", "start": 9, "ratio": 1}),
    ]


def test_direct_non_mapping_item_names_its_index_and_line(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('{"name": "a"}\n\n["not", "a", "mapping"]\n', encoding="utf-8")
    stream = iter_units(spec("direct"), path)
    assert next(stream).id == "a"
    with pytest.raises(ConfigError) as excinfo:
        next(stream)
    problem = problem_of(excinfo)
    assert (problem.file, problem.line, problem.key_path) == (str(path), 3, "[1]")
    assert problem.message.startswith("item 1 (line 3) is a list; direct items must be mappings")


def test_direct_item_without_a_name_is_refused(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"rows": [{"name": "a"}, {"label": "b"}]})
    with pytest.raises(ConfigError) as excinfo:
        list(iter_units(spec("direct", key="rows"), path))
    problem = problem_of(excinfo)
    assert (problem.line, problem.key_path) == (3, "rows[1]")
    assert problem.message == ("item 1 (line 3) has no name for its unit id (tried 'name', 'id')")


def test_direct_duplicate_id_names_the_id_and_both_items(tmp_path: Path) -> None:
    rows = [{"name": f"n{i}"} for i in range(5000)] + [{"name": "n 17"}, {"name": "n_17"}]
    path = write_jsonl(tmp_path, rows)
    with pytest.raises(ConfigError) as excinfo:
        list(iter_units(spec("direct"), path))
    problem = problem_of(excinfo)
    assert (problem.file, problem.line) == (str(path), 5002)
    assert problem.message == (
        "item 5001 (line 5002) has the unit id 'n_17' that item 5000 (line 5001) already has "
        "(duplicate unit id)"
    )


def test_direct_duplicate_in_yaml_is_found_too(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, [{"name": "a"}, {"name": "b"}, {"id": "a"}])
    with pytest.raises(ConfigError, match="unit id 'a' that item 0 \\(line 1\\) already has"):
        list(iter_units(spec("direct"), path))


def test_a_hash_hit_without_an_equal_earlier_id_is_not_a_duplicate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class EveryIdCollides:
        def add(self, key: str) -> bool:
            return False

    monkeypatch.setattr(units_module, "_IdSet", EveryIdCollides)
    path = write_jsonl(tmp_path, [{"name": n} for n in "abcd"])
    assert ids(iter_units(spec("direct"), path)) == ["a", "b", "c", "d"]


def test_missing_items_file_is_reported_when_iter_units_is_called(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="items file not found"):
        iter_units(spec("direct"), tmp_path / "absent.jsonl")


# --- permutation --------------------------------------------------------------------------------


def test_permutation_of_4_items_over_3_positions_gives_24_units(tmp_path: Path) -> None:
    cards = [{"name": n, "n": i} for i, n in enumerate(["Fool", "High Priestess", "Sun", "Moon"])]
    path = write_yaml(tmp_path, {"cards": cards})
    processing = spec("permutation", key="cards", positions=["past", "present", "future"])
    units = list(iter_units(processing, path))
    names = ["Fool", "High_Priestess", "Sun", "Moon"]
    assert ids(units) == ["-".join(p) for p in itertools.permutations(names, 3)]
    assert len(units) == 24 == count_units(processing, path)
    assert units[0].fields == {
        "unit_id": "Fool-High_Priestess-Sun",
        "past": cards[0],
        "present": cards[1],
        "future": cards[2],
    }


def test_permutation_of_plain_strings_uses_them_as_names(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, ["red", "green", "blue"])
    units = list(iter_units(spec("permutation", positions=["a", "b"]), path))
    assert ids(units) == [
        "red-green",
        "red-blue",
        "green-red",
        "green-blue",
        "blue-red",
        "blue-green",
    ]
    assert units[0].fields == {"unit_id": "red-green", "a": "red", "b": "green"}


def test_permutation_needs_as_many_items_as_positions(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, ["a", "b"])
    processing = spec("permutation", positions=["x", "y", "z"])
    with pytest.raises(ConfigError, match="needs at least 3 items; the list has 2"):
        iter_units(processing, path)
    with pytest.raises(ConfigError, match="needs at least 3 items"):
        count_units(processing, path)


def test_permutation_duplicate_names_are_refused_with_a_colliding_id(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path, {"cards": [{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "a"}]}
    )
    with pytest.raises(ConfigError) as excinfo:
        iter_units(spec("permutation", key="cards", positions=["p", "q"]), path)
    problem = problem_of(excinfo)
    assert problem.message == (
        "duplicate unit id 'a-b': items 0 and 3 of 'cards' have the same name 'a'"
    )
    assert (problem.key_path, problem.line) == ("cards[3]", 5)


# --- cross_product ------------------------------------------------------------------------------


def npc_items() -> dict[str, Any]:
    return {
        "characters": [{"name": n} for n in ["brave", "shy", "grumpy", "wise", "sly"]],
        "moods": [{"name": n} for n in ["happy", "sad", "angry", "calm"]],
        "topics": [{"id": n, "name": n.upper()} for n in ["quest", "weather", "gossip"]],
    }


def test_cross_product_5_by_4_by_3_gives_60_joined_ids(tmp_path: Path) -> None:
    data = npc_items()
    path = write_yaml(tmp_path, data)
    processing = spec("cross_product", positions=["character", "mood", "topic"])
    units = list(iter_units(processing, path))
    assert len(units) == 60 == count_units(processing, path)
    assert ids(units)[:5] == [
        "brave-happy-QUEST",
        "brave-happy-WEATHER",
        "brave-happy-GOSSIP",
        "brave-sad-QUEST",
        "brave-sad-WEATHER",
    ]
    assert units[-1].id == "sly-calm-GOSSIP"
    assert units[0].fields == {
        "unit_id": "brave-happy-QUEST",
        "character": data["characters"][0],
        "mood": data["moods"][0],
        "topic": data["topics"][0],
    }


def test_cross_product_source_key_and_name_fields(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        {
            "people": [{"nick": "Al", "name": "Alice"}, {"nick": "Bo", "name": "Bob"}],
            "places": [{"code": "NYC"}, {"id": "LA"}],
        },
    )
    processing = ProcessingSpec.model_validate(
        {
            "strategy": "cross_product",
            "items": {"source": "items.yaml", "name_field": "code"},
            "positions": [{"name": "who", "source_key": "people", "name_field": "nick"}, "place"],
        }
    )
    assert ids(iter_units(processing, path)) == ["Al-NYC", "Al-LA", "Bo-NYC", "Bo-LA"]


def test_cross_product_missing_list_suggests_the_closest_key(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"title": "t", "places": ["NYC"]})
    with pytest.raises(ConfigError) as excinfo:
        iter_units(spec("cross_product", positions=["palce"]), path)
    problem = problem_of(excinfo)
    assert (problem.key_path, problem.hint, problem.line) == ("palces", "places", 1)
    assert problem.message.startswith("no list 'palces' for position 'palce'")


def test_cross_product_duplicate_name_in_one_list_is_refused(tmp_path: Path) -> None:
    data = npc_items()
    data["moods"].append({"name": "sad"})
    path = write_yaml(tmp_path, data)
    with pytest.raises(ConfigError) as excinfo:
        iter_units(spec("cross_product", positions=["character", "mood", "topic"]), path)
    problem = problem_of(excinfo)
    assert problem.message == (
        "duplicate unit id 'brave-sad-QUEST': items 1 and 4 of 'moods' have the same name 'sad'"
    )
    assert problem.key_path == "moods[4]"


def test_cross_product_names_with_dashes_that_collide_are_refused(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"firsts": ["a-b", "a"], "seconds": ["c", "b-c"]})
    with pytest.raises(ConfigError, match="duplicate unit id 'a-b-c'"):
        list(iter_units(spec("cross_product", positions=["first", "second"]), path))


def test_cross_product_names_with_dashes_that_do_not_collide_are_fine(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"firsts": ["a-b", "x"], "seconds": ["c", "d-e"]})
    units = iter_units(spec("cross_product", positions=["first", "second"]), path)
    assert ids(units) == ["a-b-c", "a-b-d-e", "x-c", "x-d-e"]


def test_cross_product_needs_a_mapping_and_non_empty_lists(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reads one list per position from a mapping"):
        iter_units(spec("cross_product", positions=["a"]), write_yaml(tmp_path, ["x"]))
    empty = write_yaml(tmp_path, {"as": ["x"], "bs": []}, name="empty.yaml")
    with pytest.raises(ConfigError, match="'bs' \\(position 'b'\\) is empty"):
        count_units(spec("cross_product", positions=["a", "b"]), empty)


def test_position_named_unit_id_is_refused(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"unit_ids": ["x"]})
    with pytest.raises(ConfigError) as excinfo:
        iter_units(spec("cross_product", positions=["unit_id"]), path)
    assert problem_of(excinfo).key_path == "processing.positions[0].name"


# --- repeat and max_units -----------------------------------------------------------------------


def test_repeat_interleaves_clones_with_octobatch_ids_and_seeds(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"scenarios": [{"name": "a", "v": 1}, {"name": "b", "v": 2}]})
    units = list(iter_units(spec("direct", key="scenarios", repeat=3), path))
    assert ids(units) == [
        "a__rep0000",
        "b__rep0000",
        "a__rep0001",
        "b__rep0001",
        "a__rep0002",
        "b__rep0002",
    ]
    assert units[3].fields == {
        "unit_id": "b__rep0001",
        "name": "b",
        "v": 2,
        "_repetition_id": 1,
        "_repetition_seed": octobatch_seed("b", 1),
    }
    assert [u.fields["_repetition_seed"] for u in units[::2]] == [
        octobatch_seed("a", 0),
        octobatch_seed("a", 0) + 1,
        octobatch_seed("a", 0) + 2,
    ]


def test_repeat_argument_overrides_the_config_and_1_means_no_suffix(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, [{"name": "a"}])
    processing = spec("direct", repeat=5)
    assert ids(iter_units(processing, path, repeat=2)) == ["a__rep0000", "a__rep0001"]
    assert list(iter_units(processing, path, repeat=1)) == [
        Unit("a", {"unit_id": "a", "name": "a"})
    ]
    assert count_units(processing, path) == 5
    assert count_units(processing, path, repeat=1) == 1


def test_max_units_samples_every_item_of_a_repeated_pipeline(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"name": n} for n in ("x", "y", "z")])
    processing = spec("direct", repeat=100)
    units = list(iter_units(processing, path, max_units=3))
    assert ids(units) == ["x__rep0000", "y__rep0000", "z__rep0000"]
    assert count_units(processing, path, max_units=3) == 3
    assert count_units(processing, path) == 300


def test_repetition_indexes_past_9999_widen_as_in_octobatch(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, [{"name": "a"}])
    units = list(iter_units(spec("direct"), path, repeat=10001))
    assert [u.id for u in units[9998:]] == ["a__rep9998", "a__rep9999", "a__rep10000"]
    assert len({u.id for u in units}) == 10001


def test_repeated_combinations_are_cloned_per_repetition(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"as": ["p", "q"], "bs": ["r"]})
    units = list(iter_units(spec("cross_product", positions=["a", "b"], repeat=2), path))
    assert ids(units) == ["p-r__rep0000", "q-r__rep0000", "p-r__rep0001", "q-r__rep0001"]
    assert units[2].fields == {
        "unit_id": "p-r__rep0001",
        "a": "p",
        "b": "r",
        "_repetition_id": 1,
        "_repetition_seed": octobatch_seed("p-r", 1),
    }


def test_bad_repeat_and_max_units_are_usage_errors(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, [{"name": "a"}])
    with pytest.raises(UsageError, match="repeat must be at least 1"):
        iter_units(spec("direct"), path, repeat=0)
    with pytest.raises(UsageError, match="max units must be 0 or more"):
        count_units(spec("direct"), path, max_units=-1)
    assert list(iter_units(spec("direct"), path, max_units=0)) == []


# --- count_units agrees with iter_units (property) ----------------------------------------------


def _write_direct(folder: Path, fmt: str, names: list[str]) -> Path:
    rows = [{"name": name, "n": i} for i, name in enumerate(names)]
    if fmt == "jsonl":
        return write_jsonl(folder, rows, "d.jsonl")
    if fmt == "csv":
        path = folder / "d.csv"
        path.write_text("name,n\n" + "".join(f"{r['name']},{r['n']}\n" for r in rows))
        return path
    path = folder / f"d.{fmt}"
    path.write_text(json.dumps({"rows": rows}) if fmt == "json" else yaml.safe_dump({"rows": rows}))
    return path


@st.composite
def pipelines(draw: st.DrawFn) -> tuple[str, Any, int]:
    """(strategy, its shape, expected base count)."""
    strategy = draw(st.sampled_from(["direct", "permutation", "cross_product"]))
    if strategy == "direct":
        n = draw(st.integers(1, 12))
        return strategy, (draw(st.sampled_from(["yaml", "json", "jsonl", "csv"])), n), n
    if strategy == "permutation":
        n = draw(st.integers(1, 6))
        k = draw(st.integers(1, min(n, 3)))
        return strategy, (n, k), math.perm(n, k)
    lengths = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    return strategy, lengths, math.prod(lengths)


@settings(max_examples=60, deadline=None)
@given(
    pipeline=pipelines(),
    repeat=st.integers(1, 4),
    max_units=st.none() | st.integers(0, 40),
)
def test_count_units_equals_the_number_iter_units_yields(
    pipeline: tuple[str, Any, int], repeat: int, max_units: int | None
) -> None:
    strategy, shape, base = pipeline
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        if strategy == "direct":
            fmt, n = shape
            path = _write_direct(folder, fmt, [f"item {i}" for i in range(n)])
            key = "rows" if fmt in ("yaml", "json") else None
            processing = spec("direct", key=key)
        elif strategy == "permutation":
            n, k = shape
            path = write_yaml(folder, [{"name": f"c{i}"} for i in range(n)])
            processing = spec("permutation", positions=[f"p{j}" for j in range(k)])
        else:
            path = write_yaml(
                folder,
                {f"g{p}s": [f"v{p}{i}" for i in range(size)] for p, size in enumerate(shape)},
            )
            processing = spec("cross_product", positions=[f"g{p}" for p in range(len(shape))])
        produced = ids(iter_units(processing, path, max_units=max_units, repeat=repeat))
        counted = count_units(processing, path, max_units=max_units, repeat=repeat)
    expected = base * repeat if max_units is None else min(base * repeat, max_units)
    assert counted == len(produced) == expected
    assert len(set(produced)) == len(produced)


# --- streaming ----------------------------------------------------------------------------------

_MEASURE_PEAK = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    from octopipe.core.config_models import ProcessingSpec
    from octopipe.core.units import iter_units

    spec = ProcessingSpec.model_validate({"strategy": "direct", "items": {"source": "x"}})
    stream = iter_units(spec, Path(sys.argv[1]))
    first = next(stream)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    count = 1 + sum(1 for _ in stream)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"first": first.id, "count": count, "growth_kib": after - before}))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
def test_a_million_line_direct_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    # Peak RSS of a fresh process (tracemalloc would slow the million units ~5x): the only
    # state that grows is the duplicate-id table, 8 bytes per slot.
    path = tmp_path / "million.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(f'{{"name":"u{i:07d}"}}\n' for i in range(1_000_000))
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE_PEAK, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=110,
    )
    result = json.loads(done.stdout)
    assert result["first"] == "u0000000"
    assert result["count"] == 1_000_000
    assert result["growth_kib"] < 60 * 1024


# --- fan-out ------------------------------------------------------------------------------------


def test_fan_out_children_carry_the_parent_and_one_element_each() -> None:
    parent = Unit("a__rep0001", {"unit_id": "a__rep0001", "cards": ["x", "y"], "_repetition_id": 1})
    children = fan_out_children(parent, "cards", "card", ["x", "y"])
    assert children == [
        Unit(
            "a__rep0001__fan000",
            {
                "unit_id": "a__rep0001__fan000",
                "cards": ["x", "y"],
                "_repetition_id": 1,
                "card": "x",
                "_fan_index": 0,
                "_fan_parent_id": "a__rep0001",
            },
        ),
        Unit(
            "a__rep0001__fan001",
            {
                "unit_id": "a__rep0001__fan001",
                "cards": ["x", "y"],
                "_repetition_id": 1,
                "card": "y",
                "_fan_index": 1,
                "_fan_parent_id": "a__rep0001",
            },
        ),
    ]
    assert parent.fields == {"unit_id": "a__rep0001", "cards": ["x", "y"], "_repetition_id": 1}


def test_fan_out_without_child_field_replaces_the_array_and_widens_past_999() -> None:
    parent = Unit("p", {"unit_id": "p", "xs": list(range(1001))})
    children = fan_out_children(parent, "xs", None, list(range(1001)))
    assert children[7].fields == {
        "unit_id": "p__fan007",
        "xs": 7,
        "_fan_index": 7,
        "_fan_parent_id": "p",
    }
    assert [c.id for c in children[-2:]] == ["p__fan999", "p__fan1000"]
    assert fan_out_children(parent, "xs", None, []) == []
