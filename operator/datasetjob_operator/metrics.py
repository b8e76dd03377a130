"""Prometheus metrics of the operator."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

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
