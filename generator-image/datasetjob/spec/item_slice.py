"""One shard's items, computed without expanding the universe. Pure.

A worker needs only its own slice: a range's and a product's items are found by index
arithmetic, inline values by slicing, and a streamed source (fromUri, fromConfigMap) is
read past the items that are not the shard's own. Memory follows the shard, not the universe.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

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

    def offset(self, position: int) -> int:
        return position - self.start


class Positions(Sequence[int]):
    """Sorted universe positions anywhere in the universe, with O(1) membership and offset."""

    def __init__(self, positions: Iterable[int]):
        self._positions = tuple(sorted(positions))
        self._offsets = {p: k for k, p in enumerate(self._positions)}

    @overload
    def __getitem__(self, k: int) -> int: ...
    @overload
    def __getitem__(self, k: slice) -> Sequence[int]: ...
    def __getitem__(self, k: int | slice) -> int | Sequence[int]:
        return self._positions[k]

    def __len__(self) -> int:
        return len(self._positions)

    def __iter__(self) -> Iterator[int]:
        return iter(self._positions)

    def __contains__(self, position: object) -> bool:
        return position in self._offsets

    def offset(self, position: int) -> int:
        return self._offsets[position]


@dataclass(frozen=True)
class PacketItems:
    """A work packet's items: the positions a run's plan gave one worker, wherever they lie in
    the universe (see store.work_plan). `items[k]` is the item at `positions[k]`."""

    positions: Positions
    items: list[Any] = field(default_factory=list)

    def offset(self, position: int) -> int:
        return self.positions.offset(position)


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


def items_at(items: ItemsSpec, positions: Sequence[int]) -> list[Any] | None:
    """The items at these positions of a source the spec holds; None for a streamed source."""
    if items.range is not None:
        numbers = range(*items.range)
        return [numbers[p] for p in positions]
    if items.product is not None:
        product = items.product
        return [product_item(product, p) for p in positions]
    if items.values is not None:
        values = items.values
        return [values[p] for p in positions]
    return None


def slice_stream(stream: Iterable[Any], start: int, stop: int) -> ItemSlice:
    """The slice of a streamed universe: the items before `start` are passed over, not kept."""
    return ItemSlice(start, stop, list(itertools.islice(stream, start, stop)))
