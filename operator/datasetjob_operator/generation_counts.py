"""A generate Job's counts: shards from the Job status, items and cache from the workers'
termination messages (exact, need no Redis) plus live progress of shards still running. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datasetjob.spec.sharding import compress_indexes, expand_indexes

from .job_state import pod_index, termination, termination_message
from .status import CacheCounts, Failure, ItemCounts, ShardCounts


@dataclass
class GenerationCounts:
    """Counts of a generate Job: shards from the Job status, items and cache from the pods."""

    total: int
    active: int = 0
    succeeded: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    items_done: int = 0
    items_failed: int = 0
    items_reused: int = 0  # of items_done, taken from earlier runs
    items_seen_total: int = 0  # sum of shard sizes reported so far
    cache_hits: int = 0
    cache_misses: int = 0
    failures: list[Failure] = field(default_factory=list)  # a few failed shards, for humans
    spent: dict[str, float] = field(default_factory=dict)  # the run's spend, the newest any worker saw
    budget_stop: str | None = None  # a worker stopped at spec.budget: why
    rate_limit: dict[str, Any] | None = None  # the scope's latest back-pressure any worker saw
    throttles: int = 0  # throttles the workers of this run reported to their scope

    @property
    def finished(self) -> bool:
        return self.active == 0 and len(self.succeeded) + len(self.failed) == self.total

    def shard_counts(self) -> ShardCounts:
        return ShardCounts(
            total=self.total,
            active=self.active,
            succeeded=len(self.succeeded),
            failed=len(self.failed),
            succeeded_indexes=compress_indexes(self.succeeded),
            failed_indexes=compress_indexes(self.failed),
            progress=f"{len(self.succeeded)}/{self.total}",
        )

    def item_counts(self, total: int | None) -> ItemCounts:
        return ItemCounts.of(total, self.items_done, self.items_failed, self.items_reused)

    def cache_counts(self) -> CacheCounts:
        return CacheCounts(hits=self.cache_hits, misses=self.cache_misses)


def count_generation(
    job: dict[str, Any], pods: list[dict[str, Any]], live: dict[int, dict[str, Any]] | None, shards: int
) -> GenerationCounts:
    """Shard counts from the Job status; item and cache counts from the workers' final
    termination messages (exact, need no Redis) plus live progress of shards still running."""
    status = job.get("status") or {}
    succeeded = expand_indexes(status.get("completedIndexes"))
    failed = expand_indexes(status.get("failedIndexes"))
    counts = GenerationCounts(total=shards, active=int(status.get("active") or 0), succeeded=succeeded, failed=failed)

    final: dict[int, dict[str, Any]] = {}
    last_failure: dict[int, tuple[str, Failure]] = {}
    for pod in pods:
        index = pod_index(pod)
        if index is None:
            continue
        phase = (pod.get("status") or {}).get("phase")
        message = termination_message(pod)
        if message:
            _add_spend(counts, message)
        if phase == "Succeeded" and message:
            final[index] = message
        elif phase == "Failed":
            if message and message.get("state") == "budget-exhausted":
                counts.budget_stop = str(message.get("error") or "spec.budget reached")
            term = termination(pod) or {}
            stamp = term.get("finishedAt") or ""
            if index not in last_failure or stamp >= last_failure[index][0]:
                last_failure[index] = (
                    stamp,
                    Failure(shard=index, exit_code=term.get("exitCode", -1), message=_failure_text(term, message)),
                )
    # Sets built once: a tick runs these loops over every shard, twice a second.
    failed_set = set(failed)
    for index, message in final.items():
        # A pod's success is seen before its index is in completedIndexes: count it already, or
        # the items it reported would drop out of the counts for a moment.
        if index not in failed_set:
            _add(counts, message)
    for index, snapshot in (live or {}).items():
        _add_spend(counts, snapshot)
        if index not in final and index not in failed_set:
            _add(counts, snapshot)
    counts.failures = [last_failure[i][1] for i in sorted(last_failure) if i in failed_set][:10]
    return counts


def _failure_text(term: dict[str, Any], message: dict[str, Any] | None) -> str:
    if message and message.get("error"):
        return str(message["error"])[:300]
    text = (term.get("message") or term.get("reason") or "").strip()
    return text[-300:]


def _add_spend(counts: GenerationCounts, summary: dict[str, Any]) -> None:
    """The run's totals only grow: the largest each worker reported is the newest."""
    spent = summary.get("spent")
    if isinstance(spent, dict):
        for name, value in spent.items():
            if isinstance(value, int | float):
                counts.spent[name] = max(counts.spent.get(name, 0.0), float(value))


def _add(counts: GenerationCounts, summary: dict[str, Any]) -> None:
    items = summary.get("items") or {}
    cache = summary.get("cache") or {}
    counts.items_done += int(items.get("done", 0))
    counts.items_failed += int(items.get("failed", 0))
    counts.items_reused += int(items.get("reused", 0))
    counts.items_seen_total += int(items.get("total", 0))
    counts.cache_hits += int(cache.get("hits", 0))
    counts.cache_misses += int(cache.get("misses", 0))
    limit = summary.get("rateLimit")
    if isinstance(limit, dict):
        counts.throttles += int(limit.get("throttles", 0))
        # The scope's throttle count only grows: the worker that saw the most saw the latest state.
        if counts.rate_limit is None or int(limit.get("scopeThrottles", 0)) >= int(
            counts.rate_limit.get("scopeThrottles", 0)
        ):
            counts.rate_limit = limit
