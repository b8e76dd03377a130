"""The live gauges of a DatasetJob: values from its status, bounded labels, and series that go
away with the DatasetJob."""

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from datasetjob_operator import live_metrics
from datasetjob_operator.live_values import GAUGES, SERIES_PER_DATASETJOB, live_values
from datasetjob_operator.status import (
    CacheCounts,
    DatasetJobStatus,
    ItemCounts,
    Output,
    Phase,
    RateLimitState,
    ShardCounts,
    Usage,
)

NOW = datetime(2026, 1, 1, 12, 10, tzinfo=UTC)


def generating(done: int = 900, failed: int = 100, reused: int = 0) -> DatasetJobStatus:
    return DatasetJobStatus(
        phase=Phase.GENERATING,
        started_at="2026-01-01T12:00:00Z",
        items=ItemCounts.of(3600, done, failed, reused),
        shards=ShardCounts(total=4, active=3, succeeded=1, failed=0),
        cache=CacheCounts(hits=30, misses=70),
        usage=Usage(requests=70),
        rate_limit=RateLimitState(throttles=2, factor=0.5),
    )


def test_a_generating_run_has_every_gauge_and_an_eta():
    values = live_values("ns", "flow", generating(), NOW, min_item_success_ratio=0.98)
    key = ("ns", "flow")
    assert values["datasetjob_run_phase"][(*key, "Generating")] == 1
    assert sum(values["datasetjob_run_phase"].values()) == 1
    assert len(values["datasetjob_run_phase"]) == len(Phase)
    items = values["datasetjob_run_items"]
    assert items[(*key, "done")] == 900 and items[(*key, "failed")] == 100 and items[(*key, "total")] == 3600
    assert values["datasetjob_run_item_success_ratio"][key] == 0.9
    assert values["datasetjob_run_min_item_success_ratio"][key] == 0.98
    assert values["datasetjob_run_shards"][(*key, "active")] == 3
    assert values["datasetjob_run_cache_hits"][key] == 30 and values["datasetjob_run_cache_misses"][key] == 70
    assert values["datasetjob_run_upstream_requests"][key] == 70
    assert values["datasetjob_run_throttles"][key] == 2
    assert values["datasetjob_run_rate_limit_factor"][key] == 0.5
    assert values["datasetjob_run_duration_seconds"][key] == 600
    # 1,000 items in 600 s: 2,600 left take 1,560 s
    assert values["datasetjob_run_eta_seconds"][key] == 1560
    assert "datasetjob_run_rows" not in values  # nothing published yet


def test_reused_items_are_not_pace():
    # 1,000 items reused at once and 500 generated in 600 s: 2,100 left at 500 per 600 s
    values = live_values("ns", "flow", generating(done=1500, failed=0, reused=1000), NOW)
    assert values["datasetjob_run_eta_seconds"][("ns", "flow")] == 2100 * 600 / 500


def test_a_finished_run_has_a_fixed_duration_rows_and_no_eta():
    status = generating(done=3600, failed=0)
    status.phase = Phase.SUCCEEDED
    status.finished_at = "2026-01-01T12:05:00Z"
    status.output = Output(rows=7200)
    values = live_values("ns", "flow", status, NOW)
    assert values["datasetjob_run_phase"][("ns", "flow", "Succeeded")] == 1
    assert values["datasetjob_run_duration_seconds"][("ns", "flow")] == 300
    assert values["datasetjob_run_rows"][("ns", "flow")] == 7200
    assert "datasetjob_run_eta_seconds" not in values


def test_a_new_datasetjob_has_only_what_is_known():
    values = live_values("ns", "flow", DatasetJobStatus(), NOW)
    assert values == {"datasetjob_run_min_item_success_ratio": {("ns", "flow"): 1.0}}


def test_labels_are_bounded():
    values = live_values("ns", "flow", generating(), NOW)
    series = [labels for by_labels in values.values() for labels in by_labels]
    assert len(series) <= SERIES_PER_DATASETJOB
    assert all(labels[:2] == ("ns", "flow") and len(labels) <= 3 for labels in series)
    # the third label takes only the values its gauge declares
    for gauge in GAUGES:
        extra = {labels[2] for labels in values.get(gauge.name, {}) if len(labels) == 3}
        assert extra <= set(gauge.values)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        for s in metric.samples
        if s.name.startswith("datasetjob_run_")
    }


def test_the_registry_follows_the_status_and_forgets_a_deleted_datasetjob():
    registry = CollectorRegistry()
    gauges = live_metrics.LiveGauges(registry)
    spec = {"combine": {"minItemSuccessRatio": 0.9}}
    live_metrics.update("ns", "a", generating(), spec, NOW, gauges)
    live_metrics.update("ns", "b", generating(), {}, NOW, gauges)
    got = samples(registry)
    assert got[("datasetjob_run_eta_seconds", (("name", "a"), ("namespace", "ns")))] == 1560
    assert got[("datasetjob_run_min_item_success_ratio", (("name", "a"), ("namespace", "ns")))] == 0.9
    assert got[("datasetjob_run_min_item_success_ratio", (("name", "b"), ("namespace", "ns")))] == 1
    # once generation is over the ETA is unknown: its series goes rather than staying stale
    done = generating(done=3600, failed=0)
    done.phase = Phase.COMBINING
    live_metrics.update("ns", "a", done, spec, NOW, gauges)
    got = samples(registry)
    assert ("datasetjob_run_eta_seconds", (("name", "a"), ("namespace", "ns"))) not in got
    assert got[("datasetjob_run_phase", (("name", "a"), ("namespace", "ns"), ("phase", "Combining")))] == 1
    live_metrics.forget("ns", "a", gauges)
    assert not [key for key in samples(registry) if ("name", "a") in key[1]]
    assert [key for key in samples(registry) if ("name", "b") in key[1]]
    live_metrics.forget("ns", "a", gauges)  # twice (a replayed delete) is harmless


def test_series_stay_bounded_for_100_datasetjobs():
    registry = CollectorRegistry()
    gauges = live_metrics.LiveGauges(registry)
    for i in range(100):
        live_metrics.update("ns", f"job-{i}", generating(), {}, NOW, gauges)
    assert len(samples(registry)) <= 100 * SERIES_PER_DATASETJOB


def test_an_odd_threshold_in_the_spec_falls_back_to_every_item():
    assert live_metrics.min_item_success_ratio({"combine": {"minItemSuccessRatio": "x"}}) == 1
    assert live_metrics.min_item_success_ratio({"combine": None}) == 1
