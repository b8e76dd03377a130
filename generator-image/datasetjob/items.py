"""Expanding a spec's item source into the ordered item list, with ids. Pure except `read_text`."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from typing import Any, Callable, Iterable

from .errors import SpecError
from .spec import ItemsSpec, canonical_json


def parse_item_lines(text: str) -> list[Any]:
    """JSON lines, or one plain item per line. A line that is a JSON object/array/string is
    decoded; anything else (e.g. AAPL) is taken as the stripped string. Blank lines are skipped."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line[0] in '{["':
            try:
                out.append(json.loads(line))
                continue
            except json.JSONDecodeError:
                pass
        out.append(line)
    return out


def expand_items(items: ItemsSpec, read_text: Callable[[str], str] | None = None,
                 config_map_text: str | None = None) -> list[Any]:
    """The item universe in its defined order."""
    if items.values is not None:
        return list(items.values)
    if items.product is not None:
        keys = [k for k, _ in items.product]
        return [dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in items.product))]
    if items.range is not None:
        return list(range(*items.range))
    if items.from_config_map is not None:
        if config_map_text is None:
            name, key = items.from_config_map
            raise SpecError([f"spec.items.fromConfigMap: ConfigMap {name}/{key} can only be read in a "
                             "cluster; locally use fromUri (file:// or s3://) or values"])
        return parse_item_lines(config_map_text)
    if items.from_uri is not None:
        if read_text is None:
            raise SpecError(["spec.items.fromUri: no reader for this URI"])
        return parse_item_lines(read_text(items.from_uri))
    raise SpecError(["spec.items: no item source"])


def item_id(item: Any, template: str | None) -> str:
    if template:
        if not isinstance(item, dict):
            raise SpecError([f"spec.items.idTemplate: items must be objects to use a template, got {item!r:.60}"])
        try:
            return template.format(**item)
        except KeyError as exc:
            raise SpecError([f"spec.items.idTemplate: item {canonical_json(item)[:80]} has no field {exc}"]) from None
    if isinstance(item, str):
        return item
    return canonical_json(item)


def item_ids(items: Iterable[Any], template: str | None) -> list[str]:
    """Ids for all items; duplicates are an error that lists a few of them."""
    ids = [item_id(it, template) for it in items]
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    if dupes:
        shown = ", ".join(repr(d) for d in dupes[:5])
        more = f" and {len(dupes) - 5} more" if len(dupes) > 5 else ""
        raise SpecError([f"spec.items: item ids must be unique; duplicated: {shown}{more}"
                         + ("" if template else " (set spec.items.idTemplate to build ids from fields)")])
    if not ids:
        raise SpecError(["spec.items: the item source is empty"])
    return ids
