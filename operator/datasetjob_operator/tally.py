"""From Job and pod statuses (and live progress) to the DatasetJob's counts. Pure."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from datasetjob.sharding import compress_indexes, expand_indexes

INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def termination(pod: dict) -> dict | None:
    """The terminated state of the pod's first container, if it has ended."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    if not statuses:
        return None
    return ((statuses[0].get("state") or {}).get("terminated")) or None


def termination_message(pod: dict) -> dict | None:
    """The one-line JSON summary a worker or combine pod leaves (None if absent or not JSON)."""
    term = termination(pod)
    if not term or not term.get("message"):
        return None
    for line in reversed(term["message"].strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def pod_index(pod: dict) -> int | None:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(INDEX_ANNOTATION)
    return int(value) if value is not None and str(value).isdigit() else None


def job_condition(job: dict, type_: str) -> dict | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cond
    return None


def job_finished(job: dict) -> bool:
    return bool(job_condition(job, "Complete") or job_condition(job, "Failed"))


@dataclass
class ShardTally:
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
    failures: list[dict] = field(default_factory=list)  # a few failed shards, for humans

    @property
    def finished(self) -> bool:
        return self.active == 0 and len(self.succeeded) + len(self.failed) == self.total

    def shards_status(self) -> dict:
        return {"total": self.total, "active": self.active, "succeeded": len(self.succeeded),
                "failed": len(self.failed), "succeededIndexes": compress_indexes(self.succeeded),
                "failedIndexes": compress_indexes(self.failed),
                "progress": f"{len(self.succeeded)}/{self.total}"}


def items_status(total: int | None, done: int, failed: int, reused: int) -> dict:
    """status.items: done = generated + reused; total unknown ("?") until a source says."""
    return {"total": total or 0, "done": done, "failed": failed, "generated": done - reused,
            "reused": reused, "progress": f"{done}/{total if total is not None else '?'}"}


def tally_generation(job: dict, pods: list[dict], live: dict[int, dict] | None, shards: int) -> ShardTally:
    """Shard counts from the Job status; item and cache counts from the workers' final
    termination messages (exact, need no Redis) plus live progress of shards still running."""
    status = job.get("status") or {}
    succeeded = expand_indexes(status.get("completedIndexes"))
    failed = expand_indexes(status.get("failedIndexes"))
    tally = ShardTally(total=shards, active=int(status.get("active") or 0), succeeded=succeeded, failed=failed)

    final: dict[int, dict] = {}
    last_failure: dict[int, tuple[str, dict]] = {}
    for pod in pods:
        index = pod_index(pod)
        if index is None:
            continue
        phase = (pod.get("status") or {}).get("phase")
        message = termination_message(pod)
        if phase == "Succeeded" and message:
            final[index] = message
        elif phase == "Failed":
            term = termination(pod) or {}
            stamp = term.get("finishedAt") or ""
            if index not in last_failure or stamp >= last_failure[index][0]:
                last_failure[index] = (stamp, {"shard": index, "exitCode": term.get("exitCode", -1),
                                               "message": _failure_text(term, message)})
    done_set = set(succeeded)
    for index, message in final.items():
        if index in done_set:
            _add(tally, message)
    for index, snapshot in (live or {}).items():
        if index not in final and index not in set(failed):
            _add(tally, snapshot)
    tally.failures = [last_failure[i][1] for i in sorted(last_failure) if i in set(failed)][:10]
    return tally


def _failure_text(term: dict, message: dict | None) -> str:
    if message and message.get("error"):
        return str(message["error"])[:300]
    text = (term.get("message") or term.get("reason") or "").strip()
    return text[-300:]


def _add(tally: ShardTally, summary: dict) -> None:
    items = summary.get("items") or {}
    cache = summary.get("cache") or {}
    tally.items_done += int(items.get("done", 0))
    tally.items_failed += int(items.get("failed", 0))
    tally.items_reused += int(items.get("reused", 0))
    tally.items_seen_total += int(items.get("total", 0))
    tally.cache_hits += int(cache.get("hits", 0))
    tally.cache_misses += int(cache.get("misses", 0))
