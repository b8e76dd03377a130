"""A real Prometheus (built by `make prometheus`) on this host scrapes the chart's active
operator pod (its metrics port) while the sample runs; the test reads the live series through
Prometheus' HTTP API during the run and after it, and runs every dashboard panel's query.
The prometheus-operator CRDs, generated from that project's Go API types, are applied to the
test API server, and the chart's monitoring objects validate against them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from tests.build_cache import prometheus_paths
from tests.e2e.harness.addons import SYSTEM_NAMESPACE
from tests.e2e.test_operator import apply, sample, wait_phase
from tests.prometheus_server import SCRAPE_SECONDS, running_prometheus
from tests.unit.test_monitoring import ALL_ON, CHART, DASHBOARD  # the chart with every monitoring object on

MONITORING_CRDS = ("servicemonitors", "prometheusrules")


def built(name: str) -> Path:
    path = prometheus_paths()[name]
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make prometheus` (`make test` builds it)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def prometheus(cluster, operator, tmp_path_factory):
    """Prometheus on this host, scraping the operator's metrics Service every second under
    job="datasetjob" (the job label the chart's ServiceMonitor gives it), with the chart's
    alert rules loaded."""
    built("prometheus")
    target = urlparse(operator.metrics_url).netloc
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), [target], [CHART / "files" / "alerts.yaml"]) as api:
        cluster.wait_for(
            lambda: api.value('up{job="datasetjob"}') == 1,
            timeout=60,
            what=f"Prometheus scraping the operator at {target}",
            namespace=SYSTEM_NAMESPACE,
        )
        yield api


def series(namespace: str, name: str) -> str:
    return f'namespace="{namespace}", name="{name}"'


def test_prometheus_sees_a_run_live_and_after_it(cluster, operator, prometheus, s3_ns, s3, bucket):
    # the whole sample, slow enough to be scraped while it runs; a budget and a rate limit so
    # the spend and throttle gauges (and their dashboard panels) have series
    doc = sample(bucket, s3, name="smf", symbols=100, dates=36, shards=4)
    doc["spec"]["generator"]["env"] = [{"name": "SMF_LATENCY_MS", "value": "10"}]
    doc["spec"]["budget"] = {"maxRequests": 1_000_000}
    doc["spec"]["rateLimit"] = {"requestsPerSecond": 1000.0, "burst": 50, "scope": f"prom-{s3_ns}"}
    start = time.time()
    apply(cluster, s3_ns, doc)
    sel = series(s3_ns, "smf")
    done = f'datasetjob_run_items{{{sel}, state="done"}}'

    # while running: the phase gauge says Generating and items done is between 0 and 3,600
    # (and an ETA, known only then)
    def live():
        generating = prometheus.value(f'datasetjob_run_phase{{{sel}, phase="Generating"}}')
        eta = prometheus.value(f"datasetjob_run_eta_seconds{{{sel}}}")
        value = prometheus.value(done)
        return generating == 1 and eta is not None and value is not None and 0 < value < 3600 and value

    seen = cluster.wait_for(live, timeout=240, interval=0.5, what="items done rising in Prometheus", namespace=s3_ns)
    assert 0 < seen < 3600

    wait_phase(cluster, operator, s3_ns, "smf", "Succeeded", timeout=600)
    cluster.wait_for(
        lambda: prometheus.value(f'datasetjob_run_phase{{{sel}, phase="Succeeded"}}') == 1,
        timeout=30,
        what="phase Succeeded in Prometheus",
        namespace=s3_ns,
    )
    time.sleep(2 * SCRAPE_SECONDS)  # a range query's last step after the final scrape
    end = time.time()
    assert prometheus.value(done) == 3600
    assert prometheus.value(f"datasetjob_run_rows{{{sel}}}") == 3600
    assert prometheus.value(f"datasetjob_run_eta_seconds{{{sel}}}") is None  # known only while generating
    (history,) = prometheus.query_range(done, start, end)
    values = [float(v) for _, v in history["values"]]
    assert values == sorted(values) and values[-1] == 3600 and any(0 < v < 3600 for v in values)

    # every dashboard panel returns data over the run, for this DatasetJob
    panels = json.loads(DASHBOARD.read_text())["panels"]
    empty = []
    for panel in panels:
        for target in panel["targets"]:
            expr = target["expr"].replace("$namespace", s3_ns).replace("$name", "smf")
            if not prometheus.query_range(expr, start, end):
                empty.append(f"{panel['title']}: {expr}")
    assert not empty, "dashboard panels without data:\n" + "\n".join(empty)

    # no alert of the chart fires for a healthy run
    alerts = prometheus.get("/api/v1/alerts")["alerts"]
    assert not [a for a in alerts if a["labels"].get("name") == "smf" and a["state"] == "firing"], alerts

    # deleting the DatasetJob removes its series
    cluster.kubectl("delete", "dsj", "smf", "-n", s3_ns)
    cluster.wait_for(
        lambda: not prometheus.query(f"{{__name__=~'datasetjob_run_.*', {sel}}}"),
        timeout=60,
        what="the deleted DatasetJob's series gone",
        namespace=s3_ns,
    )


@pytest.fixture(scope="module")
def monitoring_crds(cluster):
    """The prometheus-operator CRDs the chart's objects need, applied to the test API server."""
    crds = built("crds")
    for plural in MONITORING_CRDS:
        # server-side: the CRDs are too large for the last-applied annotation of a client-side apply
        cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", str(crds / f"monitoring.coreos.com_{plural}.yaml")
        )
        cluster.wait_crd_established(f"{plural}.monitoring.coreos.com")


def test_the_chart_with_monitoring_validates_against_the_real_crds(cluster, monitoring_crds):
    rendered = cluster.helm("template", "datasetjob", str(CHART), "--namespace", "datasetjob-system", *ALL_ON).stdout
    kinds = {d["kind"] for d in yaml.safe_load_all(rendered) if d}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds
    cluster.kubectl("create", "namespace", "datasetjob-system", check=False)
    res = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
    assert "servicemonitor.monitoring.coreos.com/datasetjob created (server dry run)" in res.stdout, res.stdout
    assert "prometheusrule.monitoring.coreos.com/datasetjob created (server dry run)" in res.stdout, res.stdout

    # the CRDs' schemas do check: a ServiceMonitor with an interval that is no duration is refused
    monitor = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = "soon"
    bad = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(monitor), check=False)
    assert bad.returncode != 0 and "spec.endpoints[0].interval" in bad.stderr, bad.stderr
