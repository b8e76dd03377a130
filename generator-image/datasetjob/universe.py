"""The item universe of a spec, resolved where the spec runs (runner, worker, combine pod).

Every process expands the items from the spec itself (product/range/values are pure;
fromUri reads the object; fromConfigMap reads the ConfigMap key mounted into the pod at
$DSJ_ITEMS_DIR), so no expanded list ever has to be shipped through the API server.
"""

from __future__ import annotations

import os
from pathlib import Path

from .contract import ITEMS_DIR_ENV
from .errors import SpecError
from .items import expand_items, item_ids
from .spec import DatasetJobSpec
from .storage import read_uri_text



def _config_map_text(spec: DatasetJobSpec) -> str | None:
    if spec.items.from_config_map is None or not os.environ.get(ITEMS_DIR_ENV):
        return None
    name, key = spec.items.from_config_map
    path = Path(os.environ[ITEMS_DIR_ENV], key)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([f"spec.items.fromConfigMap: cannot read key {key!r} of ConfigMap {name!r}: "
                         f"{exc.strerror}"]) from None


def resolve_items(spec: DatasetJobSpec) -> tuple[list, list[str]]:
    """(items, ids) in the universe's order; SpecError if the source is bad or ids collide."""
    def read(uri: str) -> str:
        try:
            return read_uri_text(uri, spec.output.endpoint_url, spec.output.region)
        except Exception as exc:  # storage errors of any kind mean the same to the user
            raise SpecError([f"spec.items.fromUri: cannot read {uri}: {exc}"]) from None

    items = expand_items(spec.items, read, _config_map_text(spec))
    return items, item_ids(items, spec.items.id_template)
