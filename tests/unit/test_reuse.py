"""The generator fingerprint and the choice of reusable item rows (pure)."""

import copy

import pytest

from datasetjob.errors import SpecError
from datasetjob.spec.model import spec_from_dict
from datasetjob.store.fingerprint import fingerprint_inputs, generator_fingerprint, image_digest, item_digest
from datasetjob.store.reuse import ItemRecord, lineage, merge_lineage, parse_segment, segment_body, select_reusable

BASE = {
    "items": {"product": {"symbol": ["A", "B"], "date": ["d1", "d2"]}, "idTemplate": "{symbol}:{date}"},
    "shards": 2,
    "generator": {"image": "acme/gen:1", "function": "gen:example", "env": [{"name": "LATENCY", "value": "1"}]},
    "output": {"uri": "s3://bucket/a", "format": "csv"},
    "combine": {"columns": {"symbol": "string", "flow": "float64"}},
}

SHA = "sha256:" + "ab" * 32


def fingerprint(raw: dict, digest: str | None = None, token: str | None = None) -> str:
    spec = spec_from_dict("demo", raw)
    return generator_fingerprint(fingerprint_inputs(spec, image_digest(spec.generator.image, digest), token))


def changed(path: str, value):
    raw = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return raw


# What decides an item's rows: each change is a new fingerprint.
@pytest.mark.parametrize(
    "path,value",
    [
        ("generator.function", "gen:other"),
        ("generator.image", "acme/gen:2"),
        ("generator.version", "2"),
        ("generator.env", [{"name": "LATENCY", "value": "2"}]),
        ("generator.env", [{"name": "LATENCY", "value": "1"}, {"name": "MODE", "value": "x"}]),
        ("combine.columns", {"symbol": "string", "flow": "string"}),
    ],
)
def test_what_determines_the_rows_is_in_the_fingerprint(path, value):
    assert fingerprint(changed(path, value)) != fingerprint(BASE)


# How or where rows are produced: the same fingerprint.
@pytest.mark.parametrize(
    "path,value",
    [
        ("shards", 4),
        ("parallelism", 1),
        ("generator.concurrency", 16),
        ("generator.startupStaggerSeconds", 2),
        ("output.uri", "s3://other/place"),
        ("output.format", "parquet"),
        ("items.product", {"symbol": ["A", "B", "C"], "date": ["d1", "d2", "d3"]}),
        ("combine.sortBy", ["flow"]),
        ("combine.dedupeBy", ["symbol"]),
        ("combine.minItemSuccessRatio", 0.5),
        ("cache", {"ttlSeconds": 5}),
        ("retries", {"perShard": 0}),
        ("reuse", {"enabled": True, "maxAgeSeconds": 60}),
    ],
)
def test_layout_parallelism_and_location_are_not_in_the_fingerprint(path, value):
    raw = changed(path, value)
    if path == "parallelism":
        raw["shards"] = 2
    assert fingerprint(raw) == fingerprint(BASE)


def test_declared_column_order_does_not_count():
    reordered = changed("combine.columns", {"flow": "float64", "symbol": "string"})
    assert fingerprint(reordered) == fingerprint(BASE)


def test_image_digest_counts_when_known_and_the_regenerate_token_always():
    assert fingerprint(BASE, digest=SHA) != fingerprint(BASE)
    assert fingerprint(BASE, token="t1") != fingerprint(BASE) != fingerprint(BASE, token="t2")
    assert image_digest(f"acme/gen@{SHA}") == SHA
    assert image_digest(f"acme/gen:1@{SHA}", known="sha256:other") == SHA  # pinned wins
    assert image_digest("acme/gen:1") is None and image_digest(None, known=SHA) == SHA


def test_reuse_defaults_on_and_is_not_part_of_the_run_id():
    from datasetjob.spec.model import run_id

    on = spec_from_dict("demo", BASE)
    off = spec_from_dict("demo", dict(BASE, reuse={"enabled": False, "maxAgeSeconds": 3600}))
    assert on.reuse.enabled is True and on.reuse.max_age_seconds is None
    assert off.reuse.enabled is False and off.reuse.max_age_seconds == 3600
    assert run_id(on.raw_spec) == run_id(off.raw_spec)
    assert run_id(changed("generator.version", "2")) != run_id(on.raw_spec)


@pytest.mark.parametrize(
    "reuse,message",
    [
        ({"maxAgeSeconds": 0}, "spec.reuse.maxAgeSeconds: must be >= 1"),
        ({"enabled": "yes"}, "spec.reuse.enabled: must be a boolean"),
        ({"forever": True}, "spec.reuse.forever: unknown field"),
    ],
)
def test_bad_reuse_settings_name_the_field(reuse, message):
    with pytest.raises(SpecError) as err:
        spec_from_dict("demo", dict(BASE, reuse=reuse))
    assert any(p.startswith(message) for p in err.value.problems), err.value.problems


def record(item_id, rows=None, run="r1", at=100.0, item=None):
    return ItemRecord(
        item_id,
        item_digest(item if item is not None else item_id),
        rows if rows is not None else [{"id": item_id}],
        run,
        at,
    )


def test_newest_record_of_the_same_item_is_taken():
    records = [record("a", run="r1", at=100), record("a", [{"v": 2}], run="r2", at=200), record("b")]
    wanted = {0: ("a", item_digest("a")), 1: ("b", item_digest("b")), 2: ("c", item_digest("c"))}
    taken = select_reusable(records, wanted, now=300, max_age_seconds=None)
    assert sorted(taken) == [0, 1]
    assert (taken[0].run_id, taken[0].rows) == ("r2", [{"v": 2}])


def test_an_item_whose_content_changed_under_the_same_id_is_not_reused():
    records = [record("a", item={"symbol": "a", "weight": 1})]
    wanted = {0: ("a", item_digest({"symbol": "a", "weight": 2}))}
    assert select_reusable(records, wanted, now=100, max_age_seconds=None) == {}


def test_max_age_makes_old_rows_stale():
    records = [record("old", at=100), record("new", at=950)]
    wanted = {0: ("old", item_digest("old")), 1: ("new", item_digest("new"))}
    assert sorted(select_reusable(records, wanted, now=1000, max_age_seconds=60)) == [1]
    assert sorted(select_reusable(records, wanted, now=1000, max_age_seconds=900)) == [0, 1]


def test_an_item_that_produced_no_rows_is_reused_as_done():
    taken = select_reusable([record("empty", rows=[])], {5: ("empty", item_digest("empty"))}, 200, None)
    assert taken[5].rows == []


def test_segments_round_trip_and_lineage_groups_by_source_run():
    records = [
        record("a", run="r1"),
        record("b", [{"x": 1.5, "s": "é\u2028line"}], run="r2", at=3.25),
        record('c "quoted"\tid'),
    ]
    body = segment_body(records).decode()
    assert parse_segment(body) == records
    assert parse_segment(body, ids={"b", 'c "quoted"\tid'}) == records[1:]  # a shard reads only its items
    reused = {7: records[1], 3: records[0], 9: record("c", run="r1")}
    assert lineage(reused) == {"r1": ["a", "c"], "r2": ["b"]}
    assert merge_lineage([{"r2": ["b"]}, {"r1": ["a"], "r2": ["d"]}]) == {"r1": ["a"], "r2": ["b", "d"]}
