"""A shard's items computed without the universe equal the same slice of the expanded universe."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from datasetjob.spec.item_slice import product_item, slice_known, slice_stream
from datasetjob.spec.item_source import iter_items
from datasetjob.spec.model import ItemsSpec
from datasetjob.spec.sharding import shard_bounds

keys = st.lists(st.text("abcxyz", min_size=1, max_size=3), min_size=1, max_size=4, unique=True)


@st.composite
def products(draw):
    names = draw(keys)
    return tuple((k, tuple(draw(st.lists(st.integers(0, 50), min_size=1, max_size=5, unique=True)))) for k in names)


@given(products(), st.integers(1, 7), st.data())
def test_every_shard_of_a_product_is_its_slice_of_the_expansion(product, shards, data):
    items = ItemsSpec(product=product)
    universe = list(iter_items(items))
    index = data.draw(st.integers(0, shards - 1))
    start, stop = shard_bounds(len(universe), shards, index)
    own = slice_known(items, start, stop)
    assert own is not None and own.items == universe[start:stop]
    assert [list(item) for item in own.items] == [[k for k, _ in product]] * len(own.items)  # key order kept


@given(st.integers(-1000, 1000), st.integers(-1000, 1000), st.integers(1, 9), st.integers(1, 9), st.data())
def test_every_shard_of_a_range_is_its_slice(start_at, stop_at, step, shards, data):
    items = ItemsSpec(range=(start_at, stop_at, step))
    universe = list(iter_items(items))
    index = data.draw(st.integers(0, shards - 1))
    start, stop = shard_bounds(len(universe), shards, index)
    own = slice_known(items, start, stop)
    assert own is not None and own.items == universe[start:stop] and own.positions == range(start, stop)


def test_a_slice_of_a_huge_product_is_found_by_arithmetic():
    product = (("a", tuple(range(10_000))), ("b", tuple(range(10_000))))  # 10^8 items
    assert product_item(product, 0) == {"a": 0, "b": 0}
    assert product_item(product, 123_456_789 % 10**8) == {"a": 2345, "b": 6789}
    assert product_item(product, 10**8 - 1) == {"a": 9999, "b": 9999}
    own = slice_known(ItemsSpec(product=product), 99_999_998, 10**8)
    assert own is not None and own.items == [{"a": 9999, "b": 9998}, {"a": 9999, "b": 9999}]


def test_a_streamed_source_keeps_only_its_slice():
    consumed = []

    def stream():
        for i in itertools.count():
            consumed.append(i)
            yield i

    own = slice_stream(stream(), 5, 8)
    assert own.items == [5, 6, 7] and own.start == 5
    assert len(consumed) == 8  # read up to the slice's end, no further
