"""One shard's items, computed without expanding the universe. Pure.

A worker needs only its own slice: a range's and a product's items are found by index
arithmetic, inline values by slicing, and a streamed source (fromUri, fromConfigMap) is
read past the items that are not the shard's own. Memory follows the shard, not the universe.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from datasetjob.spec.model import ItemsSpec


@dataclass(frozen=True)
class ItemSlice:
    """Items [start, stop) of the universe: `items[k]` is the item at position start + k."""

    start: int
    stop: int
    items: list[Any]

    @property
    def positions(self) -> range:
        return range(self.start, self.stop)


def product_item(product: tuple[tuple[str, tuple[Any, ...]], ...], position: int) -> dict[str, Any]:
    """The item at `position` of itertools.product over the keys' values (last key fastest)."""
    out: dict[str, Any] = {}
    for key, values in reversed(product):
        position, digit = divmod(position, len(values))
        out[key] = values[digit]
    return {key: out[key] for key, _ in product}


def slice_known(items: ItemsSpec, start: int, stop: int) -> ItemSlice | None:
    """The slice of a source whose items the spec itself holds (range, product, values); None
    for a streamed source."""
    if items.range is not None:
        return ItemSlice(start, stop, list(range(*items.range)[start:stop]))
    if items.product is not None:
        return ItemSlice(start, stop, [product_item(items.product, p) for p in range(start, stop)])
    if items.values is not None:
        return ItemSlice(start, stop, list(items.values[start:stop]))
    return None


def slice_stream(stream: Iterable[Any], start: int, stop: int) -> ItemSlice:
    """The slice of a streamed universe: the items before `start` are passed over, not kept."""
    return ItemSlice(start, stop, list(itertools.islice(stream, start, stop)))
