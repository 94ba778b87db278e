"""Export lines joined from the ledger's stored texts are byte for byte the lines encoding the
merged record gives (``engine/record_lines.py``), and the cases where joining would not be
are encoded instead."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from octopipe.core.fields import visible
from octopipe.engine.record_lines import joined_line, line, record_line
from octopipe.store.codec import dumps

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
_KEYS = st.sampled_from(["unit_id", "a", "b", "é", 'q"t', "_metadata", "_raw_text", "x\n", "😀"])
_DOCUMENTS = st.lists(
    st.dictionaries(_KEYS | st.text(max_size=4), _VALUES, max_size=4), min_size=1, max_size=4
)


def _parts(documents: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    return [(document, dumps(document, what="a test document")) for document in documents]


def _encoded(unit_id: str, documents: list[dict[str, Any]]) -> str:
    merged: dict[str, Any] = {}
    for document in documents:
        merged.update(document)
    return line({"unit_id": unit_id, **visible(merged)})


@given(st.text(max_size=8), _DOCUMENTS)
def test_a_unit_line_is_the_encoded_merged_record_whichever_way_it_is_built(
    unit_id: str, documents: list[dict[str, Any]]
) -> None:
    assert record_line(unit_id, _parts(documents)) == _encoded(unit_id, documents)


@given(st.text(max_size=8), _DOCUMENTS)
def test_a_joined_line_is_exactly_the_encoded_one_or_none(
    unit_id: str, documents: list[dict[str, Any]]
) -> None:
    joined = joined_line(unit_id, _parts(documents))
    assert joined is None or joined == _encoded(unit_id, documents)


def test_the_common_record_is_joined_not_encoded() -> None:
    fields = {"unit_id": "u1", "name": "middle", "note": 'naïve "quoted"\n', "seed": 10**18}
    walk = {"square": 10, "trail": [5, 6.5, -0.0, 1e16], "nested": {"k": [None, True]}}
    parts = _parts([fields, walk, {}, {"ending": "home"}])
    joined = joined_line("u1", parts)
    assert joined == _encoded("u1", [fields, walk, {}, {"ending": "home"}])
    assert joined is not None and joined.startswith('{"unit_id":"u1","name":"middle"')


def test_a_record_without_its_id_field_gets_it_first() -> None:
    assert (
        joined_line("u\u00e9", _parts([{"x": 1}, {"y": [2]}]))
        == '{"unit_id":"u\u00e9","x":1,"y":[2]}\n'
    )
    assert joined_line("u9", _parts([{}, {}])) == '{"unit_id":"u9"}\n'


def test_records_joining_would_change_are_left_to_the_encoder() -> None:
    # a later step overwrites a field: the merged record keeps one key, at its first place
    assert joined_line("u", _parts([{"a": 1, "b": 2}, {"a": 3}])) is None
    # bookkeeping fields are not exported
    assert joined_line("u", _parts([{"a": 1}, {"_metadata": {"iterations": 3}}])) is None
    # unit_id not first: the line puts it first
    assert joined_line("u", _parts([{"a": 1, "unit_id": "u"}])) is None
    assert record_line("u", _parts([{"a": 1, "b": 2}, {"a": 3}])) == '{"unit_id":"u","a":3,"b":2}\n'
