"""The spec as the operator runs it: the installation's default output filled in, parsed once
per distinct spec, and the universe counted (and its ids checked) at the start of a run. Pure."""

from __future__ import annotations

import functools
import json
from typing import Any

from datasetjob.spec.item_source import count_items, count_unique_ids, iter_items, product_id_count
from datasetjob.spec.model import DatasetJobSpec, spec_from_dict

from .settings import Settings


def checked_item_total(spec: DatasetJobSpec, config_map_text: str | None) -> int | None:
    """The universe size, with the item ids checked for duplicates: once per run, at its start
    (a bad universe fails the run before any pod starts). None when the operator cannot know it
    without reading user storage.

    In the operator's process, so never a universe expanded, whatever its size (up to
    MAX_ITEMS): a range without idTemplate is O(1); a product is checked from its value lists,
    O(their total length) (`product_id_count`: only when its idTemplate cannot show the ids
    unique are they built one by one, up to MAX_BUILT_PRODUCT_IDS, ~15 s; a bigger one is
    refused); values (MAX_INLINE_ITEMS) and a ConfigMap (1 MiB) are small and streamed, 8 bytes
    of hash an id. A range with idTemplate fails at its first item (numbers have no fields)."""
    if spec.items.from_uri is not None:
        return None
    if spec.items.from_config_map is not None and config_map_text is None:
        return None
    if spec.items.range is not None and not spec.items.id_template:
        return count_items(spec.items)  # distinct integers: unique ids by construction
    if spec.items.product is not None:
        return product_id_count(spec.items.product, spec.items.id_template)
    lines = config_map_text.splitlines() if config_map_text is not None else None
    # The items are streamed (read again only if two ids' hashes are equal), never kept.
    return count_unique_ids(lambda: iter_items(spec.items, None, lines), spec.items.id_template)


def with_default_output(spec: dict[str, Any], namespace: str, name: str, settings: Settings) -> dict[str, Any]:
    """A spec without output.uri writes under the installation's default location. On the
    document, before it is parsed: the run id hashes the document the workers read."""
    output = dict(spec.get("output") or {})
    if output.get("uri") or not settings.default_output_prefix:
        return spec
    output["uri"] = f"{settings.default_output_prefix}/{namespace}/{name}"
    if settings.default_endpoint_url:
        output.setdefault("endpointUrl", settings.default_endpoint_url)
    if settings.default_credentials_secret:
        output.setdefault("credentialsSecret", settings.default_credentials_secret)
    return dict(spec, output=output)


@functools.lru_cache(maxsize=256)
def parsed_spec(name: str, namespace: str, spec_json: str) -> DatasetJobSpec:
    """spec_from_dict, once per distinct spec: its CEL rules cost ~30 ms, and the same spec
    comes back twice a second while shards run. The result is frozen; nobody mutates it."""
    return spec_from_dict(name, json.loads(spec_json), namespace)


def cluster_spec(name: str, namespace: str, spec: dict[str, Any], settings: Settings) -> DatasetJobSpec:
    """The spec as the run uses it (the default output filled in), parsed once per distinct spec;
    SpecError names every problem."""
    # Key order kept (not canonical JSON): the order of product keys is the item order.
    document = with_default_output(spec, namespace, name, settings)
    return parsed_spec(name, namespace, json.dumps(document, separators=(",", ":")))
