import pytest

from datasetjob.errors import SpecError
from datasetjob.spec.item_source import item_ids, iter_items
from datasetjob.spec.model import ItemsSpec, run_id, spec_from_dict, spec_from_document

BASE = {"items": {"values": ["a", "b", "c"]}, "generator": {"function": "m:f"}}


def spec(**over):
    raw = {**BASE, **over}
    return spec_from_dict("demo", raw)


def expand_items(items: ItemsSpec) -> list:
    return list(iter_items(items))


def test_defaults_are_applied_from_the_schema():
    s = spec()
    assert s.shards == 1 and s.parallelism == 1
    assert s.generator.concurrency == 1
    assert s.output.format == "csv"
    assert s.per_shard_retries == 2 and s.max_failed_shards == 0
    assert s.combine.min_item_success_ratio == 1.0
    assert s.cache.namespace == "demo" and s.cache.redis_url is None


def test_parallelism_defaults_to_shards():
    assert spec(shards=4).parallelism == 4


def test_product_keeps_written_key_order():
    s = spec(items={"product": {"symbol": ["A", "B"], "date": ["d1", "d2"]}, "idTemplate": "{symbol}:{date}"})
    items = expand_items(s.items)
    assert items[0] == {"symbol": "A", "date": "d1"} and list(items[0]) == ["symbol", "date"]
    assert item_ids(items, s.items.id_template) == ["A:d1", "A:d2", "B:d1", "B:d2"]


def test_product_order_overrides_the_written_order_and_counts_in_the_run_id():
    sorted_keys = {"date": ["d1", "d2"], "symbol": ["A", "B"]}
    written = spec(items={"product": {"symbol": ["A", "B"], "date": ["d1", "d2"]}})
    ordered = spec(items={"product": sorted_keys, "productOrder": ["symbol", "date"]})
    plain = spec(items={"product": sorted_keys})
    assert expand_items(ordered.items) == expand_items(written.items)
    assert expand_items(plain.items)[1] == {"date": "d1", "symbol": "B"}
    assert run_id(written.raw_spec) != run_id(plain.raw_spec)


def test_range_items():
    s = spec(items={"range": {"start": 2, "stop": 9, "step": 3}})
    assert expand_items(s.items) == [2, 5, 8]


def test_item_lines_are_json_or_plain():
    text = 'AAPL\n{"a": 1}\n\n"quoted"\n[1,2]\n'
    source = ItemsSpec(from_uri="file:///items.jsonl")
    items = list(iter_items(source, read_lines=lambda uri: text.splitlines()))
    assert items == ["AAPL", {"a": 1}, "quoted", [1, 2]]


def test_duplicate_ids_are_listed():
    with pytest.raises(SpecError, match=r"spec.items: item ids must be unique; duplicated: 'a'"):
        item_ids(["a", "b", "a"], None)


def test_object_ids_default_to_canonical_json():
    assert item_ids([{"b": 1, "a": 2}], None) == ['{"a":2,"b":1}']


def test_run_id_follows_semantics_not_operations():
    base = spec(shards=2).raw_spec
    same = spec(
        shards=2, parallelism=1, suspend=True, retries={"perShard": 5}, output={"uri": "s3://elsewhere/x"}
    ).raw_spec
    assert run_id(base) == run_id(same)
    assert run_id(base) != run_id(spec(shards=3).raw_spec)
    assert run_id(base) != run_id(spec(shards=2, output={"format": "parquet"}).raw_spec)
    assert run_id(base) != run_id(base, regenerate_token="2")
    assert len(run_id(base)) == 8


def test_document_envelope_is_checked():
    with pytest.raises(SpecError, match="apiVersion: must be datagen.dev/v1alpha1"):
        spec_from_document({"apiVersion": "v1", "kind": "DatasetJob", "metadata": {"name": "x"}, "spec": BASE})


@pytest.mark.parametrize("name", ["Upper", "-dash", "x" * 41, "", None])
def test_bad_names(name):
    with pytest.raises(SpecError, match="metadata.name"):
        spec_from_dict(name, BASE)
