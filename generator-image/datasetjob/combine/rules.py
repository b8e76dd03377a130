"""What the combine decides from the shard manifests alone: whether to publish (coverage,
item success ratio, columns), the run's item counts and lineage, and how a value is checked
against its declared type and sorted. Pure: `combine` reads the rows and publishes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from datasetjob.errors import CombineRefused
from datasetjob.spec.sharding import compress_indexes
from datasetjob.store.reuse import merge_lineage


def check_coverage(shards: int, manifests: dict[int, dict[str, Any]], max_failed: int) -> list[int]:
    missing = [i for i in range(shards) if i not in manifests]
    if len(missing) > max_failed:
        raise CombineRefused(
            "ShardsFailed",
            f"{len(missing)} of {shards} shards did not commit (indexes {compress_indexes(missing)}); "
            f"spec.retries.maxFailedShards allows {max_failed}",
        )
    return missing


def count_manifest_items(total_items: int, manifests: dict[int, dict[str, Any]]) -> dict[str, int]:
    """The run's items by outcome, from the committed shards' manifests: items of shards that
    did not commit are missing."""
    done = sum(m["items"]["done"] for m in manifests.values())
    failed = sum(m["items"]["failed"] for m in manifests.values())
    reused = sum(m["items"].get("reused", 0) for m in manifests.values())
    return {
        "total": total_items,
        "done": done,
        "failed": failed,
        "missing": total_items - done - failed,
        "generated": done - reused,
        "reused": reused,
    }


def run_lineage(manifests: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Where the run's items came from: generated here, or reused from which earlier run."""
    reused_from = merge_lineage([manifests[i].get("reusedFrom") or {} for i in sorted(manifests)])
    fingerprints = sorted({m["fingerprint"] for m in manifests.values() if m.get("fingerprint")})
    return {"fingerprints": fingerprints, "reusedFrom": reused_from}


def check_success_ratio(items: dict[str, int], minimum: float, first_failure: dict[str, Any] | None = None) -> None:
    ratio = items["done"] / items["total"] if items["total"] else 1.0
    if ratio + 1e-12 < minimum:
        first = f" First failure: item {first_failure['id']!r}: {first_failure['error']}." if first_failure else ""
        raise CombineRefused(
            "TooFewItems",
            f"only {items['done']} of {items['total']} items succeeded ({ratio:.2%}), below "
            f"spec.combine.minItemSuccessRatio {minimum}; {items['failed']} failed "
            f"(see failures/*.jsonl), {items['missing']} in shards that did not commit.{first} "
            "Retry the failed items or lower the ratio.",
        )


def check_columns(manifests: dict[int, dict[str, Any]], declared: dict[str, str]) -> list[str]:
    """The dataset's columns: every shard's columns, in first-seen order over the item order.

    The same rule as inside one shard (a row without a column leaves it empty), so the
    columns never depend on how the items were sharded. Declared columns must match exactly."""
    seen: dict[str, None] = {}
    for index in sorted(manifests):
        if manifests[index]["rows"] == 0:
            continue
        for column in manifests[index].get("columns") or []:
            seen.setdefault(column, None)
    reference = list(seen) or list(declared)
    if declared:
        extra = [c for c in reference if c not in declared]
        lacking = [c for c in declared if c not in seen] if seen else []
        if extra or lacking:
            raise CombineRefused(
                "SchemaMismatch",
                "columns do not match spec.combine.columns"
                + (f"; not declared: {extra}" if extra else "")
                + (f"; missing: {lacking}" if lacking else ""),
            )
    return reference


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "int64": lambda v: isinstance(v, int) and not isinstance(v, bool) or (isinstance(v, str) and _is_int(v)),
    "float64": lambda v: (
        isinstance(v, (int, float)) and not isinstance(v, bool) or (isinstance(v, str) and _is_float(v))
    ),
    "bool": lambda v: isinstance(v, bool) or (isinstance(v, str) and v.lower() in ("true", "false", "0", "1")),
    "string": lambda v: True,
}


def _is_int(text: str) -> bool:
    try:
        int(text)
        return True
    except ValueError:
        return False


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def check_value(column: str, kind: str, value: Any, where: str) -> None:
    if value is None or value == "":
        return  # missing values are allowed in any column
    if not _CHECKS[kind](value):
        raise CombineRefused(
            "SchemaMismatch", f"column {column!r} in {where}: {value!r} is not {kind} (spec.combine.columns)"
        )


def sort_key_part(value: Any, kind: str | None) -> tuple[int, str] | tuple[int, float, str]:
    """Numbers (or numeric text) before text, numerically; the rest as text. A total order."""
    if value is None or value == "":
        return (2, "")
    if kind != "string":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (0, float(value), "")
        if isinstance(value, str) and kind in (None, "int64", "float64"):
            try:
                number = float(value)
                if not math.isnan(number):
                    return (0, number, value)
            except ValueError:
                pass
    return (1, str(value))
