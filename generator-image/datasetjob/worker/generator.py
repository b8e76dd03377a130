"""Loading a generator: an SDK function (`module:callable`) or a command with placeholders."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from typing import Any

from datasetjob.errors import GeneratorConfigError
from datasetjob.store.rowtypes import Row


def load_function(ref: str) -> Callable[[Any, Any], Any]:
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import can raise anything; all mean "bad generator config"
        raise GeneratorConfigError(
            f"spec.generator.function: cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise GeneratorConfigError(f"spec.generator.function: module {module_name!r} has no attribute {attr!r}")
    if not callable(target):
        raise GeneratorConfigError(f"spec.generator.function: {ref!r} is not callable")
    fn: Callable[[Any, Any], Any] = target
    return fn


_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def substitute(template: str, values: dict[str, str]) -> str:
    """Replace only our placeholders, so other braces in a command (e.g. JSON) pass through.

    One pass: a substituted value is never searched again, so an item id that reads `{shard}`
    stays `{shard}`."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def normalise_rows(result: Any) -> list[Row]:
    """A generator's return value as a list of rows."""
    if result is None:
        return []
    if isinstance(result, dict):
        return [result]
    if isinstance(result, (list, tuple)) and all(isinstance(r, dict) for r in result):
        return [dict(r) for r in result]
    raise TypeError(f"generator must return a dict, a list of dicts or None, got {type(result).__name__}")


# Values a JSON round trip gives back unchanged (NaN included: allow_nan); a row of only these
# under string keys needs no copy. bool is a subclass of int but is listed for the exact-type test.
_FLAT_TYPES = frozenset({str, int, float, bool, type(None)})


def _flat(rows: list[Row]) -> bool:
    for row in rows:
        for key, value in row.items():
            if type(key) is not str or type(value) not in _FLAT_TYPES:
                return False
    return True


# One encoder for every item: json.dumps with options builds a new one per call.
_ROWS_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=True)


def json_safe_rows(rows: list[Row], item_id: str) -> list[Row]:
    """Rows must survive a JSON round trip (checkpoints and jsonl output are JSON). Flat rows of
    plain values already do; others (nested values, tuples, non-string keys) are round-tripped."""
    if _flat(rows):
        return rows
    try:
        copied: list[Row] = json.loads(json.dumps(rows, allow_nan=True))
        return copied
    except (TypeError, ValueError) as exc:
        raise TypeError(f"row of item {item_id!r} is not JSON-serialisable: {exc}") from None


def encode_rows(rows: list[Row]) -> str:
    """An item's rows as JSON text, once: the checkpoint and the item store both carry it."""
    return _ROWS_ENCODER.encode(rows)
