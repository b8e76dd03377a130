"""The combine's sort and dedupe out of core (combine.ordering, DuckDB) against an in-memory
reference: the same rows in the same order, the same number dropped, the same published bytes."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datasetjob.combine import ordering
from datasetjob.combine.ordering import OrderedRows
from datasetjob.combine.rules import sort_key_part
from datasetjob.errors import CombineRefused
from datasetjob.spec.model import spec_from_dict
from datasetjob.store import layout
from datasetjob.store.backends import FileStore
from datasetjob.store.tables import RowWriter, iter_rows
from tests.committed_shards import commit_shard

COLUMNS = ("a", "b", "c")


def reference(
    shards: list[list[dict[str, Any]]], sort_by: tuple[str, ...], dedupe_by: tuple[str, ...], declared: dict[str, str]
) -> tuple[list[dict[str, Any]], int]:
    """In memory: shard by shard, sorted (stably) by the sort_key_part tuple, the first of each key kept."""
    rows = [row for shard in shards for row in shard]
    if sort_by:
        rows = sorted(rows, key=lambda r: tuple(sort_key_part(r.get(c), declared.get(c)) for c in sort_by))
    if not dedupe_by:
        return rows, 0
    seen: set[tuple[str, ...]] = set()
    kept = []
    for row in rows:
        key = tuple(json.dumps(row.get(c), sort_keys=True) for c in dedupe_by)
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept, len(rows) - len(kept)


def exact(rows: list[dict[str, Any]]) -> list[str]:
    """Rows as text: 1 and 1.0, 0.0 and -0.0, key order all tell apart."""
    return [json.dumps(row, ensure_ascii=False) for row in rows]


numeric_text = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=False).map(repr),
    st.sampled_from([" 5", "5 ", "1e3", "1_000", "-0", "-0.0", "0", "inf", "-inf", "nan", "NaN", "1e400", "0x10"]),
)
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=6)
values = st.one_of(
    st.none(),
    st.just(""),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),  # conform_row turns NaN into None: the combine never sorts one
    st.sampled_from([0.0, -0.0, 1, 1.0, 2**53 + 1, float(2**53)]),
    numeric_text,
    text,
    st.lists(st.integers(0, 2), max_size=2),
    st.sampled_from([{"x": 1, "y": 2}, {"y": 2, "x": 1}, {"x": 1}]),  # equal whatever the key order
)
# few values, so a dedupe column holds duplicates (equal dicts in either key order too)
few = st.sampled_from([None, "", 1, 1.0, "1", "a", "é", "ä", "\x00", [1], {"x": 1, "y": 2}, {"y": 2, "x": 1}])
row = st.fixed_dictionaries({}, optional={"a": values, "b": few, "c": st.one_of(values, few)})
column_lists = st.lists(st.sampled_from(COLUMNS), unique=True, max_size=3).map(tuple)
kinds = st.dictionaries(st.sampled_from(COLUMNS), st.sampled_from(["string", "int64", "float64", "bool"]))


@settings(max_examples=150, deadline=None)
@given(
    shards=st.lists(st.lists(row, max_size=12), min_size=1, max_size=4),
    sort_by=column_lists,
    dedupe_by=column_lists,
    declared=kinds,
    batch_rows=st.sampled_from([2, 5, 50_000]),
    in_memory_rows=st.sampled_from([0, 20_000]),  # DuckDB, or the in-memory sort of small inputs
)
def test_ordering_and_dedupe_match_the_in_memory_reference(
    tmp_path_factory, shards, sort_by, dedupe_by, declared, batch_rows, in_memory_rows
):
    expected, dropped = reference(shards, sort_by, dedupe_by, declared)
    rows = OrderedRows(
        (r for shard in shards for r in shard), str(tmp_path_factory.mktemp("o")), sort_by, dedupe_by, declared
    )
    with (
        mock.patch.object(ordering, "BATCH_ROWS", batch_rows),
        mock.patch.object(ordering, "IN_MEMORY_ROWS", in_memory_rows),
    ):
        got = list(rows)
    assert exact(got) == exact(expected)
    assert rows.dropped == dropped


def test_without_sort_or_dedupe_the_rows_stream_through_untouched(tmp_path):
    source = [{"a": 1}, {"b": float("nan")}, {"a": (1, 2)}]  # not even JSON: never serialized
    rows = OrderedRows(iter(source), str(tmp_path))
    assert list(rows) == source
    assert rows.dropped == 0 and list(tmp_path.iterdir()) == []


def test_ties_keep_shard_then_row_order_and_the_first_row_of_a_key_wins(tmp_path):
    # 2 and 2.0 tie (and -0.0 and 0); "2" after them (its text breaks the tie), None last
    source = [{"k": 2.0, "v": 0}, {"k": -0.0, "v": 1}, {"k": "2", "v": 2}, {"k": 2, "v": 3}, {"k": 0, "v": 4}]
    source.append({"k": None, "v": 5})
    rows = OrderedRows(iter(source), str(tmp_path), sort_by=("k",), dedupe_by=("v",))
    assert [r["v"] for r in rows] == [1, 4, 0, 3, 2, 5] and rows.dropped == 0
    rows = OrderedRows(iter(source), str(tmp_path), sort_by=("k",), dedupe_by=("k",))  # 2 and 2.0 differ
    assert [r["v"] for r in rows] == [1, 4, 0, 3, 2, 5] and rows.dropped == 0
    rows = OrderedRows(iter(source[::-1]), str(tmp_path), sort_by=("k",), dedupe_by=("k",))
    assert [r["v"] for r in rows] == [4, 1, 3, 0, 2, 5]
    source = [{"k": 1, "v": 0}, {"k": 1.0, "v": 1}, {"k": 1, "v": 2}]
    rows = OrderedRows(iter(source), str(tmp_path), dedupe_by=("k",))
    assert [r["v"] for r in rows] == [0, 1] and rows.dropped == 1
    assert list(tmp_path.iterdir()) == []  # the scratch files are gone


# -- combine_run publishes the reference bytes ----------------------------------------------------------
SHARD_ROWS = (7_000, 0, 9_000, 5_000)  # 21 000 rows: several 10 000-row batches (Parquet row groups)


def _shard_rows(index: int, count: int) -> list[dict[str, Any]]:
    names = ["zoë", "Zoe", "ß", "ä", "apple", "", "日本", "10", "9.5"]
    out = []
    for n in range(count):
        i = index * 100_000 + n
        out.append(
            {
                "id": i,
                "key": f"k{(i * 7919) % 4_000}",  # many duplicates
                "score": [1.5, -0.0, 0.0, 3, 1e300, -2.25][i % 6] if i % 11 else None,
                "name": names[(i * 31) % len(names)],
            }
        )
    return out


def _committed_run(tmp_path, fmt: str, combine: dict[str, Any]):
    raw = {
        "items": {"values": [{"id": str(i)} for i in range(len(SHARD_ROWS))], "idTemplate": "{id}"},
        "shards": len(SHARD_ROWS),
        "generator": {"function": "gen:f"},
        "output": {"format": fmt},
        "combine": combine,
    }
    spec = spec_from_dict("demo", raw)
    store = FileStore(tmp_path / "out")
    run_id = "r1"
    shards = []
    for index, count in enumerate(SHARD_ROWS):
        path = commit_shard(store, run_id, index, _shard_rows(index, count), fmt, tmp_path / f"s{index}.{fmt}", 1)
        shards.append(list(iter_rows(str(path), fmt)))  # as the combine reads them (CSV as text)
    return spec, store, run_id, shards


def _expected_bytes(tmp_path, fmt: str, rows: list[dict[str, Any]]) -> bytes:
    import pyarrow.parquet as pq

    columns = ["id", "key", "score", "name"]
    schema = pq.read_schema(tmp_path / f"s0.{fmt}") if fmt == "parquet" else None
    path = str(tmp_path / f"expected.{fmt}")
    writer = RowWriter(path, fmt, columns, schema)
    for start in range(0, len(rows), 10_000):  # the combine writes 10 000 rows at a time
        writer.write(rows[start : start + 10_000])
    writer.close()
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize(
    "combine",
    [
        {"sortBy": ["score", "name"], "dedupeBy": ["key"]},
        {"sortBy": ["name"]},
        {"dedupeBy": ["key", "score"]},
        {},
    ],
    ids=["sort+dedupe", "sort", "dedupe", "neither"],
)
def test_combine_publishes_the_reference_bytes(tmp_path, fmt, combine):
    from datasetjob.combine.run import combine_run

    spec, store, run_id, shards = _committed_run(tmp_path, fmt, combine)
    expected, dropped = reference(
        shards, tuple(combine.get("sortBy", ())), tuple(combine.get("dedupeBy", ())), dict(spec.combine.columns)
    )
    result = combine_run(spec, run_id, store, len(SHARD_ROWS))
    published = store.path(layout.combined_key(run_id, fmt)).read_bytes()
    assert published == _expected_bytes(tmp_path, fmt, expected)
    assert result.rows == len(expected) and result.duplicates_dropped == dropped
    manifest = json.loads(store.get_text(layout.manifest_key(run_id)))
    assert manifest["duplicatesDropped"] == dropped and manifest["dataset"]["rows"] == len(expected)
    if combine.get("dedupeBy"):
        assert dropped > 0


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("shard", [0, 3])
def test_a_shard_with_fewer_rows_than_committed_is_refused_when_sorting_too(tmp_path, fmt, shard):
    """The row count is checked once a shard is read to its end: every shard is, before the sort."""
    from datasetjob.combine.run import combine_run

    spec, store, run_id, _ = _committed_run(tmp_path, fmt, {"sortBy": ["name"], "dedupeBy": ["key"]})
    key = layout.shard_manifest_key(run_id, shard)
    manifest = json.loads(store.get_text(key))
    manifest["rows"] += 1
    del manifest["sha256"]  # not caught by the digest: by the count
    store.put_bytes(key, json.dumps(manifest).encode())
    with pytest.raises(CombineRefused, match=f"holds {SHARD_ROWS[shard]} rows") as info:
        combine_run(spec, run_id, store, len(SHARD_ROWS))
    assert info.value.reason == "ShardCorrupt"
    assert not store.exists(layout.manifest_key(run_id))
    assert not store.exists(key)
