"""Prometheus metrics of the operator, and what each reconcile decision adds to them."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

from .object_memory import ObjectMemory
from .reconcile import Decision
from .status import Phase

RUNS_STARTED = Counter("datasetjob_runs_started_total", "Runs started (new spec, regenerate or retry)", ["namespace"])
RUNS_FINISHED = Counter(
    "datasetjob_runs_finished_total", "Runs that reached a final phase", ["namespace", "phase", "reason"]
)
ITEMS = Counter("datasetjob_items_total", "Items of finished runs, by outcome", ["namespace", "outcome"])
SHARD_FAILURES = Counter("datasetjob_shard_failures_total", "Shards that failed for good", ["namespace"])
PHASE_SECONDS = Histogram(
    "datasetjob_phase_duration_seconds",
    "Time spent in a phase before leaving it",
    ["phase"],
    buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
)


def serve(port: int) -> None:
    if port:
        start_http_server(port)


def count_decision(memory: ObjectMemory, uid: str, namespace: str, old_phase: Phase | None, decision: Decision) -> None:
    """Counts what a decision changed; called once per decision whose status write landed."""
    new_phase = decision.phase
    if old_phase == new_phase and not decision.run_started:
        return
    left = memory.enter_phase(uid, new_phase)
    if left:
        PHASE_SECONDS.labels(left[0]).observe(left[1])
    if decision.run_started:
        RUNS_STARTED.labels(namespace).inc()
    if new_phase and new_phase.finished and not (old_phase and old_phase.finished):
        status = decision.status
        RUNS_FINISHED.labels(namespace, new_phase, status.reason or "").inc()
        items = status.items
        ITEMS.labels(namespace, "done").inc(items.done if items else 0)
        ITEMS.labels(namespace, "failed").inc(items.failed if items else 0)
        SHARD_FAILURES.labels(namespace).inc(status.shards.failed if status.shards else 0)
