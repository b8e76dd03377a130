"""Values no output format can hold fail their item by name; a corrupt reuse segment or cache
file is set aside and the work goes on; the combine never trusts a shard file that does not
match its manifest."""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest

from datasetjob.cache.embedded import EmbeddedCache
from datasetjob.combine.run import combine_run
from datasetjob.errors import CombineRefused, RowValueError
from datasetjob.spec.model import spec_from_dict
from datasetjob.store import layout
from datasetjob.store.backends import FileStore, Store
from datasetjob.store.checkpoint import Checkpoint
from datasetjob.store.item_store import ItemStore
from datasetjob.store.reuse import ItemRecord, segment_body
from datasetjob.store.rowtypes import conform_row, type_conflicts
from datasetjob.store.tables import write_rows
from datasetjob.worker.generator import encode_rows
from tests.committed_shards import commit_shard

SURROGATE = "bad \ud800"


# -- text that is not UTF-8 ----------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize(
    "row,column",
    [
        ({"id": "a", "text": SURROGATE}, "text"),
        ({"id": "a", "nested": {"k": [1, SURROGATE]}}, "nested"),
        ({"id": "a", "keyed": {SURROGATE: 1}}, "keyed"),
        ({"id": "a", SURROGATE: 1}, SURROGATE),
    ],
)
def test_a_lone_surrogate_is_refused_naming_its_column(fmt, row, column):
    with pytest.raises(RowValueError) as info:
        conform_row(row, {}, fmt)
    assert repr(column) in str(info.value)
    assert "UTF-8" in str(info.value)
    str(info.value).encode("utf-8")  # the reason itself is writable to failures/*.jsonl


def test_a_lone_surrogate_in_a_declared_string_column_is_refused():
    with pytest.raises(RowValueError, match="'label'"):
        conform_row({"label": ["x", SURROGATE]}, {"label": "string"}, "csv")


def test_text_that_is_utf8_passes_unchanged():
    row = {"id": "ü", "nested": {"k": ["\u2028", "😀"]}}
    assert conform_row(row, {}, "parquet") == row


# -- Parquet: nested values hold one type per column ---------------------------------------------
def test_a_nested_list_of_mixed_types_fails_its_item():
    rows = [(0, [{"x": [1, 2]}]), (1, [{"x": [1, "a"]}]), (2, [{"x": [3]}])]
    out = type_conflicts(rows, {})
    assert list(out) == [1]
    assert "'x'" in out[1] and "Parquet" in out[1]


def test_nested_types_that_do_not_merge_across_items_fail_the_later_item():
    rows = [
        (0, [{"x": [1], "s": {"a": 1}}]),
        (1, [{"x": [2.5], "s": {"b": "t"}}]),  # list<int64> + list<double>, struct fields merge
        (2, [{"x": ["a"]}]),
        (3, [{"s": {"a": "text"}}]),
        (4, [{"x": [None], "s": {}}]),
    ]
    out = type_conflicts(rows, {})
    assert sorted(out) == [2, 3]
    assert "'x'" in out[2] and "'s'" in out[3]
    kept = [row for p, rs in rows if p not in out for row in rs]
    write_rows(kept, "/dev/null", "parquet")  # what is left is one table


def test_declared_columns_are_not_held_to_the_nested_type():
    rows = [(0, [{"x": [1]}]), (1, [{"x": ["a"]}])]
    assert type_conflicts(rows, {"x": "string"}) == {}


# -- reuse segments --------------------------------------------------------------------------------
def _record(item_id: str) -> ItemRecord:
    return ItemRecord(item_id, "digest-" + item_id, [{"id": item_id, "n": 1}], "run1", 1000.0)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x01 not json at all\n",
        b'{"id": "b", "item": "digest-b", "rows": [{"id"',  # cut mid-line
        b'{"id": "b", "item": "digest-b", "rows": "not rows", "runId": "r", "generatedAt": 1}\n',
        b'["a list"]\n',
        b"\xff\xfe\n",
    ],
)
def test_a_corrupt_segment_is_set_aside_and_the_rest_is_reused(tmp_path, caplog, garbage):
    store = FileStore(tmp_path)
    items = ItemStore(store, "fp1", {})
    items.save("run1", "shard-0000", [_record("a").to_line()])
    bad_key = layout.item_segment_key("fp1", "run1", "shard-0001", "00000000000000000001-deadbeef")
    store.put_bytes(bad_key, garbage)
    with caplog.at_level(logging.WARNING):
        records = items.load({"a", "b"})
    assert [r.id for r in records] == ["a"]
    assert not store.exists(bad_key)
    aside = [k for k in store.list("items/") if ".corrupt-" in k]
    assert len(aside) == 1 and aside[0].startswith(bad_key + ".corrupt-")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and bad_key in warnings[0]
    assert [r.id for r in items.load({"a", "b"})] == ["a"]  # the next load does not see it again


class ObjectStore(Store):
    """A store that cannot rename (as on S3): every call goes to a FileStore."""

    def __init__(self, root):
        self.files = FileStore(root)
        self.uri = "s3://bucket/prefix"

    def put_bytes(self, key, data):
        self.files.put_bytes(key, data)

    def put_file(self, key, path):
        self.files.put_file(key, path)

    def get_bytes(self, key):
        return self.files.get_bytes(key)

    def open_read(self, key):
        return self.files.open_read(key)

    def download(self, key, path):
        self.files.download(key, path)

    def exists(self, key):
        return self.files.exists(key)

    def list(self, prefix):
        return self.files.list(prefix)

    def delete_prefix(self, prefix, keep=frozenset()):
        self.files.delete_prefix(prefix, keep)


def test_a_corrupt_segment_in_an_object_store_is_skipped_and_named(tmp_path, caplog):
    store = ObjectStore(tmp_path)
    items = ItemStore(store, "fp1", {})
    items.save("run1", "shard-0000", [_record("a").to_line()])
    bad_key = layout.item_segment_key("fp1", "run1", "shard-0001", "00000000000000000001-deadbeef")
    store.put_bytes(bad_key, b"garbage\n")
    with caplog.at_level(logging.WARNING):
        assert [r.id for r in items.load()] == ["a"]
    assert store.exists(bad_key)
    assert any(store.key_uri(bad_key) in r.getMessage() for r in caplog.records)


def test_segments_that_are_fine_load_as_before(tmp_path):
    store = FileStore(tmp_path)
    items = ItemStore(store, "fp1", {})
    items.save("run1", "shard-0000", [_record("a").to_line(), _record("b").to_line()])
    assert sorted(r.id for r in items.load()) == ["a", "b"]
    assert sorted(r.id for r in items.load({"b"})) == ["b"]
    assert json.loads(segment_body([_record("a")]))["id"] == "a"


# -- the embedded cache ----------------------------------------------------------------------------
@pytest.mark.parametrize("garbage", [b"this is not a database" * 100, b"SQLite format 3\x00" + b"\xff" * 5000])
def test_a_corrupt_cache_file_is_set_aside_and_a_fresh_one_started(tmp_path, caplog, garbage):
    (tmp_path / "cache.sqlite").write_bytes(garbage)
    with caplog.at_level(logging.WARNING):
        cache = EmbeddedCache(tmp_path, namespace="t")
        cache.set("k", {"v": 1})
        assert cache.get("k") == (True, {"v": 1})
        cache.close()
    aside = list(tmp_path.glob("cache.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "cache.sqlite" in warnings[0]
    with sqlite3.connect(tmp_path / "cache.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM entries").fetchone() == (1,)
    again = EmbeddedCache(tmp_path, namespace="t")  # a second process finds the fresh file
    assert again.get("k") == (True, {"v": 1})
    again.close()
    assert len(list(tmp_path.glob("cache.sqlite.corrupt-*"))) == 1


# -- the combine checks each shard against its manifest --------------------------------------------
def _committed_run(tmp_path, fmt: str = "jsonl"):
    raw = {
        "items": {"values": [{"id": str(i)} for i in range(4)], "idTemplate": "{id}"},
        "shards": 2,
        "generator": {"function": "gen:f"},
        "output": {"format": fmt},
    }
    spec = spec_from_dict("demo", raw)
    store = FileStore(tmp_path / "out")
    run_id = "r1"
    for index in range(2):
        rows = [{"id": str(2 * index + k), "n": k} for k in range(2)]
        commit_shard(store, run_id, index, rows, fmt, tmp_path / f"s{index}.{fmt}", 2)
    return spec, store, run_id


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_a_truncated_shard_file_is_never_published(tmp_path, fmt):
    spec, store, run_id = _committed_run(tmp_path, fmt)
    data = store.path(layout.shard_data_key(run_id, 1, fmt))
    data.write_bytes(data.read_bytes()[: len(data.read_bytes()) // 2])
    with pytest.raises(CombineRefused) as info:
        combine_run(spec, run_id, store, 4)
    assert info.value.reason == "ShardCorrupt"
    assert "shard-" in str(info.value) and "--resume" in str(info.value)
    assert not store.exists(layout.manifest_key(run_id))
    assert not store.exists(layout.LATEST_KEY)
    # The shard is no longer committed, so a resumed run generates it again.
    assert not store.exists(layout.shard_manifest_key(run_id, 1))
    assert store.exists(layout.shard_manifest_key(run_id, 0))
    assert [k for k in store.list(f"runs/{run_id}/shards/") if ".corrupt-" in k]


def test_intact_shards_publish(tmp_path):
    spec, store, run_id = _committed_run(tmp_path)
    result = combine_run(spec, run_id, store, 4)
    assert result.rows == 4


def test_damage_found_mid_run_turns_the_cache_off_and_the_next_start_sets_it_aside(tmp_path, caplog):
    cache = EmbeddedCache(tmp_path, namespace="t")
    for i in range(3000):
        cache.set(f"k{i}", "x" * 200)
    cache.close()
    with sqlite3.connect(tmp_path / "cache.sqlite") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray((tmp_path / "cache.sqlite").read_bytes())
    data[4096:] = b"\x07" * (len(data) - 4096)  # every page but the first (the schema)
    (tmp_path / "cache.sqlite").write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        damaged = EmbeddedCache(tmp_path, namespace="t")
        assert damaged.get("k1") == (False, None)
        damaged.set("k1", "y")  # no error: the cache is off in this process
        assert damaged.get("k1") == (False, None)
        damaged.close()
        fresh = EmbeddedCache(tmp_path, namespace="t")
        fresh.set("k1", "z")
        assert fresh.get("k1") == (True, "z")
        fresh.close()
    assert len(list(tmp_path.glob("cache.sqlite.corrupt-*"))) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2 and all("cache.sqlite" in w for w in warnings)


def test_a_damaged_checkpoint_part_is_skipped_and_text_with_line_separators_loads(tmp_path, caplog):
    store = FileStore(tmp_path)
    checkpoint = Checkpoint(store, "r1", 0)
    checkpoint.record(0, "a", encode_rows([{"text": "one\u2028two\x85three"}]))
    checkpoint.flush()
    store.put_bytes(layout.checkpoint_prefix("r1", 0) + "part-0-broken.jsonl", b'{"position": 1, "ro')
    with caplog.at_level(logging.WARNING):
        assert Checkpoint(store, "r1", 0).load() == {0: [{"text": "one\u2028two\x85three"}]}
    assert any("part-0-broken.jsonl" in r.getMessage() for r in caplog.records)
