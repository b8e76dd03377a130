"""The live gauges of one DatasetJob, from its status. Pure: live_metrics.py puts them in the
operator's Prometheus registry.

Every series is labelled with the DatasetJob's namespace and name, plus at most one label
whose values are fixed (a phase, an item or shard state), never an item id: a DatasetJob has
at most SERIES_PER_DATASETJOB series, whatever the size of its run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .status import DatasetJobStatus, Phase


@dataclass(frozen=True)
class GaugeSpec:
    name: str
    help: str
    label: str | None = None  # the one label beyond namespace and name
    values: tuple[str, ...] = ()  # every value of that label


ITEM_STATES = ("total", "done", "failed", "reused", "generated")
SHARD_STATES = ("total", "active", "succeeded", "failed")

PHASE = GaugeSpec(
    "datasetjob_run_phase", "1 for the DatasetJob's current phase, 0 for the others", "phase", tuple(Phase)
)
ITEMS = GaugeSpec("datasetjob_run_items", "Items of the current run, by state", "state", ITEM_STATES)
SUCCESS_RATIO = GaugeSpec(
    "datasetjob_run_item_success_ratio", "Items done / (done + failed) in the current run, once one finished"
)
MIN_SUCCESS_RATIO = GaugeSpec(
    "datasetjob_run_min_item_success_ratio", "The spec's combine.minItemSuccessRatio: publish needs done/total >= it"
)
ROWS = GaugeSpec("datasetjob_run_rows", "Rows of the published dataset, once published")
CACHE_HITS = GaugeSpec("datasetjob_run_cache_hits", "Upstream calls of the current run answered by the shared cache")
CACHE_MISSES = GaugeSpec("datasetjob_run_cache_misses", "Upstream calls of the current run the cache could not answer")
UPSTREAM = GaugeSpec("datasetjob_run_upstream_requests", "Upstream requests the current run's generators made")
THROTTLES = GaugeSpec("datasetjob_run_throttles", "429/503 answers the current run's workers reported")
RATE_FACTOR = GaugeSpec("datasetjob_run_rate_limit_factor", "Back-pressure factor of the rate-limit scope (1: none)")
SHARDS = GaugeSpec("datasetjob_run_shards", "Shards of the current run, by state", "state", SHARD_STATES)
DURATION = GaugeSpec("datasetjob_run_duration_seconds", "Seconds since the current run started (until it finished)")
ETA = GaugeSpec("datasetjob_run_eta_seconds", "Estimated seconds until every item is processed, while generating")

GAUGES = (
    PHASE,
    ITEMS,
    SUCCESS_RATIO,
    MIN_SUCCESS_RATIO,
    ROWS,
    CACHE_HITS,
    CACHE_MISSES,
    UPSTREAM,
    THROTTLES,
    RATE_FACTOR,
    SHARDS,
    DURATION,
    ETA,
)
SERIES_PER_DATASETJOB = sum(len(g.values) if g.label else 1 for g in GAUGES)

# gauge name -> {label values (namespace, name[, the gauge's label]): value}
Values = dict[str, dict[tuple[str, ...], float]]


def _seconds(start: str | None, end: datetime) -> float | None:
    if not start:
        return None
    return max(0.0, (end - datetime.fromisoformat(start)).total_seconds())


def live_values(
    namespace: str, name: str, status: DatasetJobStatus, now: datetime, *, min_item_success_ratio: float = 1.0
) -> Values:
    """The gauges of one DatasetJob. A gauge that is unknown now (no run yet, an ETA before the
    first item) is left out, so its series disappears rather than lying with a 0."""
    by_label: dict[str, dict[str, float]] = _values(status, now, min_item_success_ratio)
    return {
        gauge: {(namespace, name, label) if label else (namespace, name): v for label, v in series.items()}
        for gauge, series in by_label.items()
    }


def _values(status: DatasetJobStatus, now: datetime, min_item_success_ratio: float) -> dict[str, dict[str, float]]:
    """Gauge name -> {its own label's value ("" when it has none): value}."""
    values = {MIN_SUCCESS_RATIO.name: {"": float(min_item_success_ratio)}}
    phase = status.phase
    if phase is not None:
        values[PHASE.name] = {p: float(p == phase) for p in PHASE.values}
    items = status.items
    if items is not None:
        values[ITEMS.name] = {state: float(getattr(items, state)) for state in ITEM_STATES}
        finished = items.done + items.failed
        if finished:
            values[SUCCESS_RATIO.name] = {"": items.done / finished}
    if status.shards is not None:
        values[SHARDS.name] = {state: float(getattr(status.shards, state)) for state in SHARD_STATES}
    if status.cache is not None:
        values[CACHE_HITS.name] = {"": float(status.cache.hits)}
        values[CACHE_MISSES.name] = {"": float(status.cache.misses)}
    if status.usage is not None:
        values[UPSTREAM.name] = {"": float(status.usage.requests)}
    if status.rate_limit is not None:
        values[THROTTLES.name] = {"": float(status.rate_limit.throttles)}
        values[RATE_FACTOR.name] = {"": float(status.rate_limit.factor)}
    if status.output is not None and status.output.rows is not None:
        values[ROWS.name] = {"": float(status.output.rows)}
    end = datetime.fromisoformat(status.finished_at) if status.finished_at else now
    duration = _seconds(status.started_at, end)
    if duration is not None:
        values[DURATION.name] = {"": duration}
    eta = _eta(status, duration)
    if eta is not None:
        values[ETA.name] = {"": eta}
    return values


def _eta(status: DatasetJobStatus, duration: float | None) -> float | None:
    """Items left / this run's pace so far. Reused items cost no time, so they count as left
    work never and as pace never."""
    items = status.items
    if status.phase != Phase.GENERATING or items is None or not items.total or not duration:
        return None
    left = max(0, items.total - items.done - items.failed)
    if not left:
        return 0.0
    processed = items.generated + items.failed
    if processed <= 0:
        return None
    return left * duration / processed
