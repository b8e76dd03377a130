from hypothesis import given
from hypothesis import strategies as st

from datasetjob.spec.sharding import compress_indexes, expand_indexes, shard_bounds, shard_name


@given(total=st.integers(0, 5000), shards=st.integers(1, 300))
def test_every_item_in_exactly_one_shard_and_sizes_differ_by_at_most_one(total, shards):
    bounds = [shard_bounds(total, shards, i) for i in range(shards)]
    covered = [p for start, stop in bounds for p in range(start, stop)]
    assert covered == list(range(total))  # contiguous, ordered, no overlap, no gap
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1


def test_out_of_range_index_is_an_error():
    import pytest

    with pytest.raises(ValueError):
        shard_bounds(10, 3, 3)


@given(st.sets(st.integers(0, 20000), max_size=400))
def test_index_ranges_round_trip(indexes):
    text = compress_indexes(indexes)
    assert expand_indexes(text) == sorted(indexes)


def test_index_range_format_matches_job_status():
    assert compress_indexes([0, 1, 2, 3, 5, 7, 8]) == "0-3,5,7-8"
    assert compress_indexes([]) == ""
    assert shard_name(3) == "shard-00003"
