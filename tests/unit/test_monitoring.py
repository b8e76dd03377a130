"""The chart's monitoring objects: alert rules checked and unit-tested by promtool, the
dashboard's queries parsed by promtool, and the chart rendering none of it unless asked.

promtool is built by `make prometheus` (a prerequisite of `make test`); helm by `make helm`.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from datasetjob_operator.live_values import GAUGES
from tests.build_cache import control_plane_binaries, prometheus_paths

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "datasetjob"
ALERTS = CHART / "files" / "alerts.yaml"
ALERT_TESTS = REPO / "tests" / "fixtures" / "prometheus" / "alerts_test.yaml"
DASHBOARD = CHART / "files" / "dashboard.json"
MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule"}
ALL_ON = [
    "--set",
    "monitoring.serviceMonitor.enabled=true",
    "--set",
    "monitoring.prometheusRule.enabled=true",
    "--set",
    "monitoring.dashboard.enabled=true",
]


def built(path: Path, target: str) -> str:
    if not path.exists():
        pytest.skip(f"{path} is not built: run `make {target}` (`make test` builds it)")
    return str(path)


@pytest.fixture(scope="module")
def promtool() -> str:
    return built(prometheus_paths()["promtool"], "prometheus")


@pytest.fixture(scope="module")
def helm() -> str:
    return built(control_plane_binaries()["helm"], "helm")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=REPO)


def render(helm: str, *values: str) -> list[dict]:
    res = run(helm, "template", "datasetjob", str(CHART), "--namespace", "datasetjob-system", *values)
    assert res.returncode == 0, res.stderr
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def alert_names() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    return [r["alert"] for r in rules if "alert" in r]


def test_promtool_checks_the_alert_rules(promtool):
    res = run(promtool, "check", "rules", str(ALERTS))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in res.stdout


def test_promtool_unit_tests_pass(promtool):
    res = run(promtool, "test", "rules", str(ALERT_TESTS))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_every_alert_has_cases_that_fire_and_that_do_not():
    cases = [c for t in yaml.safe_load(ALERT_TESTS.read_text())["tests"] for c in t.get("alert_rule_test", [])]
    for alert in alert_names():
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert}: no case where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{alert}: no case where it stays quiet"


def test_the_rules_use_only_metrics_the_operator_exports():
    exported = {g.name for g in GAUGES} | {"up"}
    text = " ".join(r["expr"] for r in yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"])
    assert set(re.findall(r"\b(datasetjob_\w+|up)\{", text)) <= exported


def test_the_stall_window_is_only_in_the_stall_rule():
    # the template rewrites these spellings of the window (templates/prometheusrule.yaml)
    for rule in yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]:
        text = yaml.safe_dump(rule)
        if rule["alert"] != "DatasetJobStalled":
            assert "15m" not in text and "15 * 60" not in text, rule["alert"]
        else:
            assert "[15m]" in rule["expr"] and "15 * 60" in rule["expr"]


def test_the_chart_renders_no_monitoring_object_by_default(helm):
    docs = render(helm)
    assert not {d["kind"] for d in docs} & MONITORING_KINDS
    assert not [d for d in docs if "grafana_dashboard" in d["metadata"].get("labels", {})]


def test_the_chart_renders_each_monitoring_object_when_asked(helm, promtool, tmp_path):
    docs = render(helm, *ALL_ON, "--set", "monitoring.prometheusRule.stallMinutes=30")
    by_kind = {d["kind"]: d for d in docs if d["kind"] in MONITORING_KINDS}
    assert set(by_kind) == MONITORING_KINDS
    monitor = by_kind["ServiceMonitor"]
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"].endswith("-metrics"))
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    # the job label the operator-down alert matches
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "datasetjob"

    rules = by_kind["PrometheusRule"]["spec"]
    stall = next(r for r in rules["groups"][0]["rules"] if r["alert"] == "DatasetJobStalled")
    assert "[30m]" in stall["expr"] and "30 * 60" in stall["expr"]
    rendered = tmp_path / "rules.yaml"
    rendered.write_text(yaml.safe_dump(rules))
    res = run(promtool, "check", "rules", str(rendered))
    assert res.returncode == 0, res.stdout + res.stderr

    dashboard = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard"))
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["datasetjob.json"]) == json.loads(DASHBOARD.read_text())


def test_each_monitoring_object_is_its_own_switch(helm):
    assert {d["kind"] for d in render(helm, ALL_ON[0], ALL_ON[1])} & MONITORING_KINDS == {"ServiceMonitor"}
    assert {d["kind"] for d in render(helm, ALL_ON[2], ALL_ON[3])} & MONITORING_KINDS == {"PrometheusRule"}


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        ("monitoring.prometheusRule.stallMinutes=0", "at '/monitoring/prometheusRule/stallMinutes'"),
        ("monitoring.serviceMonitor.interval=soon", "at '/monitoring/serviceMonitor/interval'"),
        ("monitoring.grafana.enabled=true", "additional properties 'grafana' not allowed"),
    ],
)
def test_the_values_schema_covers_monitoring(helm, setting, error):
    res = run(helm, "template", "datasetjob", str(CHART), "--set", setting)
    assert res.returncode != 0 and error in res.stderr, res.stderr


def test_a_service_monitor_needs_the_metrics_service(helm):
    res = run(helm, "template", "datasetjob", str(CHART), *ALL_ON[:2], "--set", "metrics.enabled=false")
    assert res.returncode != 0 and "needs metrics.enabled" in res.stderr


def panel_queries() -> dict[str, str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {f"{p['title']} ({t['refId']})": t["expr"] for p in panels for t in p["targets"]}


def dashboard_expr(expr: str) -> str:
    """A panel's query as Grafana sends it, for the dashboard's variables set to All."""
    return expr.replace("$namespace", ".*").replace("$name", ".*")


def test_every_dashboard_query_parses(promtool, tmp_path):
    # promtool parses a rule file's expressions: one recording rule per panel query
    rules = [
        {"record": f"dashboard:panel_{i}", "expr": dashboard_expr(e)} for i, e in enumerate(panel_queries().values())
    ]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    res = run(promtool, "check", "rules", str(path))
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_dashboard_shows_the_live_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "datasetjob"
    used = " ".join(panel_queries().values())
    for gauge in GAUGES:
        assert gauge.name in used, f"no panel shows {gauge.name}"
