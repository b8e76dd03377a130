import pytest

from datasetjob.combine.rules import (
    CombineRefused,
    check_columns,
    check_coverage,
    check_success_ratio,
    check_value,
    count_manifest_items,
    sort_key_part,
)


def manifest(done=10, failed=0, rows=10, columns=("a", "b")):
    return {
        "items": {"done": done, "failed": failed},
        "rows": rows,
        "columns": list(columns),
        "cache": {"hits": 0, "misses": 0},
    }


def test_missing_shards_within_budget_are_reported():
    assert check_coverage(4, {0: manifest(), 2: manifest(), 3: manifest()}, 1) == [1]


def test_missing_shards_over_budget_refuse_with_reason():
    with pytest.raises(CombineRefused, match=r"2 of 4 shards did not commit \(indexes 1-2\)") as exc:
        check_coverage(4, {0: manifest(), 3: manifest()}, 1)
    assert exc.value.reason == "ShardsFailed"


def test_success_ratio_counts_missing_shards_as_not_done():
    items = count_manifest_items(40, {0: manifest(done=9, failed=1), 1: manifest(done=10)})
    assert items == {"total": 40, "done": 19, "failed": 1, "missing": 20, "generated": 19, "reused": 0}
    with pytest.raises(CombineRefused, match="only 19 of 40 items succeeded") as exc:
        check_success_ratio(items, 0.5)
    assert exc.value.reason == "TooFewItems"
    check_success_ratio(items, 0.475)


def test_columns_that_drift_between_shards_are_merged_in_first_seen_order():
    """The rule inside one shard (a row without a column leaves it empty), across shards too."""
    assert check_columns({0: manifest(), 1: manifest(columns=("a", "c"))}, {}) == ["a", "b", "c"]
    assert check_columns({0: manifest(columns=("c",)), 1: manifest()}, {}) == ["c", "a", "b"]


def test_empty_shards_do_not_take_part_in_the_column_check():
    assert check_columns({0: manifest(rows=0, columns=()), 1: manifest()}, {}) == ["a", "b"]


def test_declared_columns_must_match():
    with pytest.raises(CombineRefused, match=r"not declared: \['b'\]") as exc:
        check_columns({0: manifest()}, {"a": "string"})
    assert exc.value.reason == "SchemaMismatch"


@pytest.mark.parametrize("kind,good,bad", [("int64", "12", "1.5"), ("float64", "1e3", "abc"), ("bool", "true", "yes")])
def test_value_types(kind, good, bad):
    check_value("c", kind, good, "shard-00000 row 1")
    with pytest.raises(CombineRefused, match=f"column 'c' in shard-00000 row 1: '{bad}' is not {kind}"):
        check_value("c", kind, bad, "shard-00000 row 1")


def test_sort_key_orders_numbers_numerically_and_is_total():
    values = ["10", "9", "b", "a", "", 3, 2.5]
    ordered = sorted(values, key=lambda v: sort_key_part(v, None))
    assert ordered == [2.5, 3, "9", "10", "a", "b", ""]
