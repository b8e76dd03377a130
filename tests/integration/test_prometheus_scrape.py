"""The operator's live gauges scraped by a real Prometheus (built by `make prometheus`): a run's
series rise and end where the status ends, every dashboard panel's query returns data, the
chart's alert rules load, and a deleted DatasetJob's series disappear. The e2e tier does the
same against the operator pod in the cluster (tests/e2e/test_prometheus.py)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from datasetjob_operator import live_metrics
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
from tests.build_cache import prometheus_paths
from tests.prometheus_server import SCRAPE_SECONDS, free_port, running_prometheus, wait_until

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "helm" / "datasetjob" / "files" / "alerts.yaml"
DASHBOARD = REPO / "helm" / "datasetjob" / "files" / "dashboard.json"
TOTAL = 3600


def status_at(done: int, started: datetime, phase: Phase = Phase.GENERATING) -> DatasetJobStatus:
    return DatasetJobStatus(
        phase=phase,
        started_at=started.isoformat(),
        items=ItemCounts.of(TOTAL, done, 0, 0),
        shards=ShardCounts(total=4, active=4 if phase == Phase.GENERATING else 0, succeeded=4 * done // TOTAL),
        cache=CacheCounts(hits=done // 10, misses=done - done // 10),
        usage=Usage(requests=done - done // 10),
        rate_limit=RateLimitState(throttles=done // 1000, factor=1.0),
    )


@pytest.fixture
def exporter():
    """The live gauges in a registry of their own, served over HTTP as the operator does."""
    registry = CollectorRegistry()
    gauges = live_metrics.LiveGauges(registry)
    port = free_port()
    served = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield gauges, f"127.0.0.1:{port}"
    if isinstance(served, tuple):  # (server, thread) in the prometheus_client versions that return them
        served[0].shutdown()


def test_live_gauges_through_a_real_prometheus(exporter, tmp_path):
    if not prometheus_paths()["prometheus"].exists():
        pytest.skip("prometheus is not built: run `make prometheus` (`make test` builds it)")
    gauges, target = exporter
    spec = {"combine": {"minItemSuccessRatio": 0.98}}
    started = datetime.now(UTC) - timedelta(seconds=1)
    with running_prometheus(tmp_path, [target], [ALERTS]) as prom:
        assert prom.get("/api/v1/rules")["groups"][0]["rules"], "the chart's alert rules did not load"
        sel = 'namespace="ml", name="flow"'
        start = time.time()
        # a run progressing over ~8 s, a reconcile every 0.5 s
        for step in range(1, 17):
            live_metrics.update("ml", "flow", status_at(TOTAL * step // 16, started), spec, gauges=gauges)
            if step == 8:  # halfway: Prometheus has it while the run is going
                wait_until(
                    lambda: 0 < (prom.value(f'datasetjob_run_items{{{sel}, state="done"}}') or 0) < TOTAL,
                    10,
                    "items done in between",
                )
            else:
                time.sleep(0.5)
        finished = status_at(TOTAL, started, Phase.SUCCEEDED)
        finished.finished_at = datetime.now(UTC).isoformat()
        finished.output = Output(rows=TOTAL)
        live_metrics.update("ml", "flow", finished, spec, gauges=gauges)
        wait_until(lambda: prom.value(f'datasetjob_run_phase{{{sel}, phase="Succeeded"}}') == 1, 10, "phase Succeeded")
        time.sleep(2 * SCRAPE_SECONDS)  # a range query's last step after the final scrape
        end = time.time()
        assert prom.value(f'datasetjob_run_items{{{sel}, state="done"}}') == TOTAL
        assert prom.value(f"datasetjob_run_eta_seconds{{{sel}}}") is None
        (history,) = prom.query_range(f'datasetjob_run_items{{{sel}, state="done"}}', start, end)
        values = [float(v) for _, v in history["values"]]
        assert values == sorted(values) and values[-1] == TOTAL and any(0 < v < TOTAL for v in values)

        empty = []
        for panel in json.loads(DASHBOARD.read_text())["panels"]:
            for target_ in panel["targets"]:
                expr = target_["expr"].replace("$namespace", "ml").replace("$name", "flow")
                if not prom.query_range(expr, start, end):
                    empty.append(f"{panel['title']}: {expr}")
        assert not empty, "dashboard panels without data:\n" + "\n".join(empty)

        live_metrics.forget("ml", "flow", gauges)
        wait_until(lambda: not prom.query(f"{{__name__=~'datasetjob_run_.*', {sel}}}"), 10, "the forgotten series gone")
