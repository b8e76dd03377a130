"""The item universe of a spec, resolved where the spec runs (runner, worker, combine pod).

Every process takes what it needs from the spec itself (product/range/values are pure;
fromUri reads the object; fromConfigMap reads the ConfigMap key mounted into the pod at
$DSJ_ITEMS_DIR), so no expanded list ever has to be shipped through the API server. A worker
holds only its own shard's items; the whole universe is only ever streamed (counted, its ids
checked).
Item files are streamed line by line, within the byte limits of `limits`. This module does
the reading; turning lines into items and ids is `item_source`, which does no I/O.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

from datasetjob.contract import ITEMS_DIR_ENV
from datasetjob.errors import SpecError, StorageError
from datasetjob.spec.documents import open_regular_file
from datasetjob.spec.item_slice import ItemSlice, slice_known, slice_stream
from datasetjob.spec.item_source import count_items, count_unique_ids, item_ids, iter_items
from datasetjob.spec.limits import MAX_ITEM_LINE_BYTES, MAX_ITEM_SOURCE_BYTES, size_text
from datasetjob.spec.model import DatasetJobSpec, range_length
from datasetjob.spec.sharding import shard_bounds
from datasetjob.store.backends import open_uri

_CHUNK = 1 << 20


def capped_lines(stream: BinaryIO, field: str, source: str) -> Iterator[str]:
    """The text lines of `stream`, refusing (naming the limit) a source or a line that is too big."""
    total, number, pending = 0, 0, b""
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > MAX_ITEM_SOURCE_BYTES:
            raise SpecError(
                [f"{field}: {source} is larger than {size_text(MAX_ITEM_SOURCE_BYTES)} (the item source size limit)"]
            )
        *lines, pending = (pending + chunk).split(b"\n")
        for raw in lines:
            number += 1
            yield _decode(raw, field, source, number)
        if len(pending) > MAX_ITEM_LINE_BYTES:
            raise SpecError(
                [
                    f"{field}: {source} line {number + 1} is longer than "
                    f"{size_text(MAX_ITEM_LINE_BYTES)} (the item line limit)"
                ]
            )
    if pending:
        yield _decode(pending, field, source, number + 1)


def _decode(raw: bytes, field: str, source: str, number: int) -> str:
    if len(raw) > MAX_ITEM_LINE_BYTES:
        raise SpecError(
            [f"{field}: {source} line {number} is longer than {size_text(MAX_ITEM_LINE_BYTES)} (the item line limit)"]
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError([f"{field}: {source} line {number} is not UTF-8 text"]) from None


def _unreadable(field: str, source: str, exc: Exception) -> SpecError:
    reason = (getattr(exc, "strerror", None) or str(exc)).removeprefix(f"{source}: ")
    return SpecError([f"{field}: cannot read {source}: {reason}"])


def _stream_lines(opener: Callable[[], BinaryIO], field: str, source: str) -> Iterator[str]:
    try:
        stream = opener()
    except (OSError, StorageError) as exc:
        raise _unreadable(field, source, exc) from None
    try:
        yield from capped_lines(stream, field, source)
    except (OSError, StorageError) as exc:
        raise _unreadable(field, source, exc) from None
    finally:
        stream.close()


def _config_map_lines(spec: DatasetJobSpec) -> Iterator[str] | None:
    if spec.items.from_config_map is None or not os.environ.get(ITEMS_DIR_ENV):
        return None
    name, key = spec.items.from_config_map
    path = Path(os.environ[ITEMS_DIR_ENV], key)
    return _stream_lines(
        lambda: open_regular_file(path), "spec.items.fromConfigMap", f"key {key!r} of ConfigMap {name!r}"
    )


def _open_item_uri(spec: DatasetJobSpec, uri: str) -> BinaryIO:
    """A file:// source only when it is a regular file (a FIFO would block for ever)."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":  # the path as open_uri takes it
        return open_regular_file(parsed.netloc + parsed.path if parsed.netloc not in ("", "localhost") else parsed.path)
    return open_uri(uri, spec.output.endpoint_url, spec.output.region)


def _items(spec: DatasetJobSpec) -> Iterator[Any]:
    def read_lines(uri: str) -> Iterator[str]:
        return _stream_lines(lambda: _open_item_uri(spec, uri), "spec.items.fromUri", uri)

    return iter_items(spec.items, read_lines, _config_map_lines(spec))


def universe_items(spec: DatasetJobSpec) -> Iterator[Any]:
    """The universe's items in order, streamed (never all held)."""
    return _items(spec)


def universe_size(spec: DatasetJobSpec) -> int:
    """How many items, keeping none: O(1) for range, product and values; one streamed pass
    (items parsed, not kept) for fromUri and fromConfigMap."""
    known = count_items(spec.items)
    if known is not None:
        return known
    return sum(1 for _ in _items(spec))


def shard_slice(spec: DatasetJobSpec, index: int) -> tuple[ItemSlice, list[str]]:
    """Shard `index`'s items and their ids, never holding the universe: a streamed source is
    read twice (counted, then its slice kept). Ids are checked within the slice; the whole
    universe's ids are checked once per run, where it starts (check_universe)."""
    start, stop = shard_bounds(universe_size(spec), spec.shards, index)
    own = slice_known(spec.items, start, stop) or slice_stream(_items(spec), start, stop)
    return own, item_ids(own.items, spec.items.id_template) if own.items else []


def ids_by_shard(spec: DatasetJobSpec, total: int) -> Iterator[tuple[int, list[str]]]:
    """(index, ids) of each shard in turn, the universe read once: one shard's ids at a time."""
    stream = _items(spec)
    for index in range(spec.shards):
        start, stop = shard_bounds(total, spec.shards, index)
        own = list(itertools.islice(stream, stop - start))
        yield index, item_ids(own, spec.items.id_template) if own else []


def check_universe(spec: DatasetJobSpec) -> int:
    """The number of items, every id checked (unique, no NUL, within the template limits) while
    streaming: only a hash of each id is kept (nothing for a range without idTemplate, whose ids
    cannot repeat)."""
    if spec.items.range is not None and not spec.items.id_template:
        return range_length(*spec.items.range)  # ids are the numbers: unique, nothing to read
    return count_unique_ids(lambda: _items(spec), spec.items.id_template)
