"""A DatasetJob's status, typed: its phases and fields. Pure.

The CRD's status schema is generated from these classes (`status_schema`), and the reconciler
builds a `DatasetJobStatus` rather than a dict, so the schema, the writer and the readers
cannot drift apart. Field names are snake_case here and camelCase in the API.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from datasetjob.spec.apitypes import SchemaStyle, api_field, from_api, schema_of, to_api

# The status schema's layout: integers as int64, each description after its keywords.
_STYLE = SchemaStyle(integer_format="int64", description_last=True)


class Phase(enum.StrEnum):
    QUEUED = "Queued"  # held by someone else (Kueue, a person) although spec.suspend is false
    GENERATING = "Generating"
    COMBINING = "Combining"
    SUSPENDED = "Suspended"  # spec.suspend is true
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)

    @property
    def running(self) -> bool:
        """Pods may be working: the operator follows these phases closely."""
        return self in (Phase.GENERATING, Phase.COMBINING)


def _field(description: str, default: Any = None, *, factory: Any = None, **schema: Any) -> Any:
    """A status field with its API description and extra schema keywords."""
    return api_field(description, default, factory=factory, **schema)


def _count(description: str) -> Any:
    return _field(description, 0)


@dataclass
class JobNames:
    plan: str | None = _field("the run's plan Job: which items to generate, when the run reuses items")
    generate: str | None = _field(
        "the run's generate Job (Indexed: one completion index per shard, or per work packet when planned)"
    )
    combine: str | None = _field("the run's combine Job, created when generation has finished")


@dataclass
class ShardCounts:
    total: int = _count("shards in the run (spec.shards)")
    active: int = _count("shards whose pod is running now")
    succeeded: int = _count("shards that committed their output")
    failed: int = _count("shards that failed after their retries (spec.retries.perShard)")
    succeeded_indexes: str = _field("indexes of the succeeded shards, as ranges (e.g. 0-3,7)", "")
    failed_indexes: str = _field("indexes of the failed shards, as ranges (e.g. 4,9)", "")
    progress: str = _field("succeeded/total, for kubectl get", "")


@dataclass
class ItemCounts:
    total: int = _count("items in the universe (0 until known, e.g. for spec.items.fromUri)")
    done: int = _count("items with rows: done = generated + reused")
    failed: int = _count("items whose generator call failed (recorded with their error)")
    generated: int = _count("items done by this run's generator calls")
    reused: int = _count(
        "items done with rows an earlier run produced under the same generator "
        "fingerprint (spec.reuse); done = generated + reused"
    )
    progress: str = _field("done/total, for kubectl get ('?' while the total is unknown)", "")

    @classmethod
    def of(cls, total: int | None, done: int, failed: int, reused: int) -> ItemCounts:
        return cls(
            total=total or 0,
            done=done,
            failed=failed,
            generated=done - reused,
            reused=reused,
            progress=f"{done}/{total if total is not None else '?'}",
        )


@dataclass
class PlanCounts:
    packets: int = _count("work packets: the generate Job's completions (none: no generate Job)")
    shards_with_work: int = _count("shards with at least one item to generate")
    shards_reused: int = _count("shards whose every item was stored already")
    to_generate: int = _count("items the run must generate")
    reused: int = _count("items whose rows are taken from the item store")
    key: str = _field("the plan's object under spec.output.uri (the workers read their packets there)", "")


@dataclass
class Usage:
    requests: float = _count("upstream requests the run's generators made (ctx.limit, ctx.usage)")
    tokens: float = _count("tokens the run's generators reported (ctx.usage)")
    cost: float = _count("cost the run's generators reported (ctx.usage), in their unit")


@dataclass
class RateLimitState:
    effective: dict[str, float] = _field(
        "the scope's limits under back-pressure, in the spec's units (e.g. tokensPerMinute)", factory=dict
    )
    factor: float = _field("the back-pressure factor: 1 unthrottled, 0.5 after one halving", 1.0)
    throttles: int = _count("429/503 answers this run's workers reported to the scope")
    scope_throttles: int = _count("throttles the whole scope has seen, every DatasetJob sharing it")


@dataclass
class CacheCounts:
    hits: int = _count("upstream calls answered by the shared cache")
    misses: int = _count("upstream calls the cache could not answer")


@dataclass
class Output:
    uri: str | None = _field("where the combined dataset was published")
    manifest_uri: str | None = _field("the run's manifest.json: shards, item counts, lineage of reused items")
    rows: int | None = _field("rows in the combined dataset")
    bytes: int | None = _field("size of the combined dataset in bytes")
    sha256: str | None = _field("sha256 of the combined dataset's bytes")
    missing_shards: str | None = _field("shards left out because they failed (within spec.retries.maxFailedShards)")


@dataclass
class Failure:
    shard: int = _count("the shard's completion index")
    exit_code: int = _field("exit code of the shard's last pod", -1)
    message: str = _field("the shard's error, shortened", "")


@dataclass
class Condition:
    type: str = _field("Ready, Progressing, Stalled, Suspended or Queued", "")
    status: str = _field("True, False or Unknown", "Unknown", enum=["True", "False", "Unknown"])
    reason: str | None = _field("why, in one CamelCase word")
    message: str | None = _field("why, for humans")
    last_transition_time: str | None = _field("when the status last changed", format="date-time")
    observed_generation: int | None = _field("the metadata.generation this condition was computed for")


@dataclass
class DatasetJobStatus:
    phase: Phase | None = _field("Queued, Generating, Combining, Suspended, Succeeded or Failed")
    reason: str | None = _field("why the DatasetJob is in its phase, in one CamelCase word")
    message: str | None = _field("why the DatasetJob is in its phase, for humans")
    run_id: str | None = _field("the current run: a hash of the spec (and of a regenerate token)")
    attempt: str | None = _field("the run's attempt: 0, then one per handled datagen.dev/retry-failed token")
    observed_generation: int | None = _field("the metadata.generation this status was computed for")
    started_at: str | None = _field("when the current run started", format="date-time")
    finished_at: str | None = _field("when the current run succeeded or failed", format="date-time")
    jobs: JobNames | None = _field("the Jobs of the current run")
    plan: PlanCounts | None = _field("the current run's plan, when it reuses items (spec.reuse)")
    shards: ShardCounts | None = _field("shard counts of the current run (work packets, when planned)")
    items: ItemCounts | None = _field("item counts of the current run")
    cache: CacheCounts | None = _field("shared-cache counts of the current run")
    rate_limit: RateLimitState | None = _field("the rate-limit scope as this run's workers last saw it")
    throughput: str | None = _field("items generated (or failed) per second since the run started, e.g. 12.5/s")
    eta: str | None = _field("while generating: the time left at that pace, e.g. 3m10s")
    usage: Usage | None = _field("the current run's spend (when spec.budget is set), across its attempts")
    output: Output | None = _field("the published dataset, once the run succeeded")
    failures: list[Failure] | None = _field("a few shard failures, for humans", maxItems=10)
    retry_token: str | None = _field("the datagen.dev/retry-failed annotation value last handled")
    applied_suspend: bool | None = _field("spec.suspend as the operator last applied it to the run's Jobs")
    conditions: list[Condition] = _field(
        "kstatus conditions: Ready, Progressing, Stalled, Suspended, Queued",
        factory=list,
        **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )

    def to_dict(self) -> dict[str, Any]:
        """The status as the API stores it: camelCase keys, no null fields."""
        api: dict[str, Any] = to_api(self)
        return api

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DatasetJobStatus:
        """The status as read from the API; unknown keys and values are dropped (e.g. the
        phase of an older operator), never an error."""
        status: DatasetJobStatus = from_api(cls, data or {})
        return status


def status_schema() -> dict[str, Any]:
    """The CRD's status schema (openAPIV3Schema), from the classes above."""
    schema = schema_of(DatasetJobStatus, _STYLE)
    schema["description"] = "What the operator observed: the current run's phase, counts and output."
    conditions = schema["properties"]["conditions"]
    conditions["items"]["required"] = ["type", "status"]
    return schema


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: only what changed, null
    for what went away. Lists are replaced whole, as merge patches do."""
    patch: dict[str, Any] = {key: None for key in old.keys() - new.keys()}
    for key, value in new.items():
        before = old.get(key)
        if key in old and before == value:
            continue
        if isinstance(value, dict) and isinstance(before, dict):
            patch[key] = merge_patch(before, value)
        else:
            patch[key] = value
    return patch
