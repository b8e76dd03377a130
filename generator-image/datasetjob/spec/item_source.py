"""A spec's item source expanded into the ordered item stream, and the items' ids. Pure: the
lines of a fromUri object or a ConfigMap key are read by the caller (`universe`) and passed in.

Sources are streamed: a fromUri file is parsed line by line and never held as one text, and
checking ids (`count_unique_ids`) keeps one id per item, not the items.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from datasetjob.errors import SpecError
from datasetjob.spec.limits import MAX_ID_LENGTH, MAX_ITEMS
from datasetjob.spec.model import ItemsSpec, canonical_json, id_template_parts

_SKIP = object()


def parse_item_line(line: str) -> Any:
    """A JSON object/array/string line is decoded; anything else (e.g. AAPL) is the stripped
    string. A blank line gives _SKIP."""
    line = line.strip()
    if not line:
        return _SKIP
    if line[0] in '{["':
        try:
            return json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            pass
    return line


def _counted(items: Iterable[Any], field: str) -> Iterator[Any]:
    """Items of a source whose size is only known by reading it, up to MAX_ITEMS."""
    for n, item in enumerate(items, 1):
        if n > MAX_ITEMS:
            raise SpecError([f"{field}: more than {MAX_ITEMS} items, over the limit of {MAX_ITEMS} items per run"])
        yield item


def iter_items(
    items: ItemsSpec,
    read_lines: Callable[[str], Iterable[str]] | None = None,
    config_map_lines: Iterable[str] | None = None,
) -> Iterator[Any]:
    """The item universe in its defined order, one item at a time."""
    if items.values is not None:
        return iter(items.values)
    if items.product is not None:
        keys = [k for k, _ in items.product]
        return (dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(v for _, v in items.product)))
    if items.range is not None:
        return iter(range(*items.range))
    if items.from_config_map is not None:
        if config_map_lines is None:
            name, key = items.from_config_map
            raise SpecError(
                [
                    f"spec.items.fromConfigMap: ConfigMap {name}/{key} can only be read in a "
                    "cluster; locally use fromUri (file:// or s3://) or values"
                ]
            )
        return _counted(
            (i for i in map(parse_item_line, config_map_lines) if i is not _SKIP), "spec.items.fromConfigMap"
        )
    if items.from_uri is not None:
        if read_lines is None:
            raise SpecError(["spec.items.fromUri: no reader for this URI"])
        return _counted(
            (i for i in map(parse_item_line, read_lines(items.from_uri)) if i is not _SKIP), "spec.items.fromUri"
        )
    raise SpecError(["spec.items: no item source"])


def count_items(items: ItemsSpec, config_map_text: str | None = None) -> int | None:
    """The universe size without building it: O(1) for values, product and range (the operator
    asks on every tick, and a range of 10^6 items must not be expanded for that). None when it
    needs a read this function cannot do (fromUri, or fromConfigMap without its text)."""
    if items.values is not None:
        return len(items.values)
    if items.product is not None:
        return math.prod(len(v) for _, v in items.product)
    if items.range is not None:
        return len(range(*items.range))
    if items.from_config_map is not None and config_map_text is not None:
        return sum(1 for line in config_map_text.splitlines() if line.strip())
    return None


def _templated_id(item: dict[str, Any], template: str) -> str:
    """The template's literals and the item's fields, refused as soon as the id would pass
    MAX_ID_LENGTH: never built longer, whatever the fields hold or the template repeats."""
    literals, fields = id_template_parts(template)
    size = sum(map(len, literals))
    parts = [literals[0]]
    for name, literal in zip(fields, literals[1:], strict=True):
        try:
            value = item[name]
        except KeyError:
            raise SpecError(
                [f"spec.items.idTemplate: item {canonical_json(item)[:80]} has no field {name!r}"]
            ) from None
        text = value if type(value) is str else format(value)
        size += len(text)
        if size > MAX_ID_LENGTH:
            raise SpecError(
                [
                    f"spec.items.idTemplate: the id of item {canonical_json(item)[:80]} would be longer than "
                    f"{MAX_ID_LENGTH} characters (MAX_ID_LENGTH, the item id limit)"
                ]
            )
        parts += (text, literal)
    return "".join(parts)


def item_id(item: Any, template: str | None) -> str:
    if template:
        if not isinstance(item, dict):
            raise SpecError([f"spec.items.idTemplate: items must be objects to use a template, got {item!r:.60}"])
        return _templated_id(item, template)
    if isinstance(item, str):
        return item
    if type(item) is int:  # what canonical_json gives, without its cost (a range has millions)
        return str(item)
    return canonical_json(item)


def _nul_error(ident: str, number: int) -> SpecError:
    return SpecError(
        [
            f"spec.items: item {number} (id {ident[:80]!r}) has a NUL character in its id, which no "
            "file name, command argument or log line can carry"
        ]
    )


def _duplicates_error(dupes: list[str], template: str | None) -> SpecError:
    shown = ", ".join(repr(d) for d in dupes[:5])
    more = f" and {len(dupes) - 5} more" if len(dupes) > 5 else ""
    return SpecError(
        [
            f"spec.items: item ids must be unique; duplicated: {shown}{more}"
            + ("" if template else " (set spec.items.idTemplate to build ids from fields)")
        ]
    )


def item_ids(items: Iterable[Any], template: str | None) -> list[str]:
    """Ids for all items; duplicates are an error that lists a few of them."""
    ids = [item_id(it, template) for it in items]
    for number, ident in enumerate(ids, 1):
        if "\x00" in ident:
            raise _nul_error(ident, number)
    counts = Counter(ids)
    if len(counts) != len(ids):
        raise _duplicates_error([i for i, n in counts.items() if n > 1], template)
    if not ids:
        raise SpecError(["spec.items: the item source is empty"])
    return ids


def count_unique_ids(items: Iterable[Any], template: str | None) -> int:
    """How many items; the same errors as item_ids, keeping only the ids, not the items."""
    seen: set[str] = set()
    dupes: dict[str, None] = {}
    n = 0
    for item in items:
        n += 1
        ident = item_id(item, template)
        if "\x00" in ident:
            raise _nul_error(ident, n)
        if ident in seen:
            dupes[ident] = None
        else:
            seen.add(ident)
    if dupes:
        raise _duplicates_error(list(dupes), template)
    if not n:
        raise SpecError(["spec.items: the item source is empty"])
    return n
