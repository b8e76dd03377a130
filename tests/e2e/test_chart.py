"""The Helm chart and the plain manifests, installed for real on the local control plane.
The operator Deployment's pod is run by the process kubelet from the chart's own command,
args, env, projected ServiceAccount token and RBAC."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.harness.cluster import free_port
from tests.e2e.operator_process import REPO, install_crd_and_rbac  # noqa: F401 (CRD helper)

CHART = REPO / "helm" / "datasetjob"
GROUP, VERSION, PLURAL = "datagen.dev", "v1alpha1", "datasetjobs"


def test_helm_lint(cluster):
    out = cluster.helm("lint", str(CHART))
    assert "0 chart(s) failed" in out.stdout


def test_rendered_manifests_are_up_to_date():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "render-manifests.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("values", [
    [],
    ["--set", "watchNamespaces={team-a,team-b}", "--set", "redis.enabled=false",
     "--set", "externalRedis.url=redis://redis.example:6379/0",
     "--set", "operator.resources.limits.memory=1Gi", "--set", "operator.resources.requests.cpu=200m",
     "--set", "metrics.enabled=false", "--set", "defaultOutput.prefix=s3://ml-datasets"],
], ids=["defaults", "namespaced-no-redis-custom-resources"])
def test_rendered_chart_passes_server_side_dry_run(cluster, values):
    for ns in ("datasetjob-system", "team-a", "team-b"):
        cluster.kubectl("create", "namespace", ns, check=False)
    rendered = cluster.helm("template", "datasetjob", str(CHART), "--namespace", "datasetjob-system", *values).stdout
    res = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
    assert "created (server dry run)" in res.stdout
    kinds = {d["kind"] for d in yaml.safe_load_all(rendered) if d}
    if values:
        assert "StatefulSet" not in kinds and {"Role", "RoleBinding"} <= kinds
    else:
        assert {"StatefulSet", "ClusterRole", "Deployment", "Secret"} <= kinds


BAD_VALUES = {
    "operator.logLevel=LOUD": "value must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR'",
    "metrics.port=80": "at '/metrics/port': minimum: got 80, want 1,024",
    "worker.runAsUser=0": "at '/worker/runAsUser': minimum: got 0, want 1",
    "watchNamespaces={Team_A}": "at '/watchNamespaces/0'",
    "redis.maxMemory=lots": "at '/redis/maxMemory'",
    "externalRedis.url=redis://:secret@host:6379": "at '/externalRedis/url'",
    "defaultOutput.prefix=gs://bucket": "at '/defaultOutput/prefix'",
    "operatr.logLevel=INFO": "additional properties 'operatr' not allowed",
}


@pytest.mark.parametrize("setting", sorted(BAD_VALUES))
def test_values_schema_rejects_bad_values(cluster, setting):
    res = cluster.helm("template", "datasetjob", str(CHART), "--set", setting, check=False)
    assert res.returncode != 0
    assert BAD_VALUES[setting] in res.stderr, res.stderr


def test_cluster_role_is_least_privilege_and_explained():
    rendered = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, 'scripts'); "
         "import importlib.util as u; s = u.spec_from_file_location('r', 'scripts/render-manifests.py'); "
         "m = u.module_from_spec(s); s.loader.exec_module(m); print(m.install_text())"],
        capture_output=True, text=True, cwd=REPO, check=True).stdout
    roles = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in ("ClusterRole", "Role")]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule
    source = (CHART / "templates" / "_helpers.tpl").read_text() + (CHART / "templates" / "rbac.yaml").read_text()
    lines = source.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("- apiGroups:"):
            assert lines[i - 1].strip().startswith("#"), f"rule without a comment: {line.strip()} after {lines[i-1]!r}"


def test_helm_install_runs_the_sample_and_uninstall_keeps_crd_and_data(
        cluster, namespace, redis_server, s3_server, s3_bucket):
    system = f"dsj-system-{namespace[-5:]}"
    cluster.kubectl("create", "namespace", system)
    values = {
        "operator": {"resyncSeconds": 1, "healthPort": free_port()},  # pods share the host's ports
        "redis": {"enabled": False},
        "externalRedis": {"url": redis_server.url},
        "metrics": {"port": free_port()},
        "defaultOutput": {"prefix": f"s3://{s3_bucket}", "endpointUrl": s3_server.endpoint_url,
                          "credentialsSecret": "s3-credentials"},
    }
    cluster.helm("install", "datasetjob", str(CHART), "--namespace", system, "-f", "-", input=yaml.safe_dump(values))
    try:
        op = cluster.wait_for(
            lambda: next((p for p in cluster.core.list_namespaced_pod(
                system, label_selector="app.kubernetes.io/component=operator").items
                if p.status.phase == "Running"), None),
            timeout=120, what="operator pod running", namespace=system)
        assert op.spec.service_account_name == "datasetjob"
        assert op.spec.containers[0].command == ["dsj", "operator"]

        cluster.core.create_namespaced_secret(namespace, {
            "metadata": {"name": "s3-credentials"},
            "stringData": {"AWS_ACCESS_KEY_ID": s3_server.access_key,
                           "AWS_SECRET_ACCESS_KEY": s3_server.secret_key}})
        cluster.kubectl("apply", "-n", namespace, "-f", str(REPO / "manifests" / "samples" / "smart-money-flow.yaml"))

        def published():
            obj = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "smart-money-flow")
            phase = (obj.get("status") or {}).get("phase")
            assert phase != "Failed", json.dumps(obj.get("status"), indent=1)
            return obj if phase == "Succeeded" else None

        obj = cluster.wait_for(published, timeout=600, what="sample Succeeded", namespace=namespace,
                               objects=[f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/smart-money-flow"])
        st = obj["status"]
        assert st["items"]["total"] == 3600 and st["output"]["rows"] >= 0.98 * 3600
        assert st["output"]["uri"].startswith(f"s3://{s3_bucket}/{namespace}/smart-money-flow/runs/")
        log = cluster.kubelet.pod_log(system, op.metadata.name)
        assert "Forbidden" not in log and "403" not in log, log[-2000:]

        # Delete DatasetJobs before the operator goes: their finalizer is the operator's.
        cluster.kubectl("delete", "dsj", "--all", "-n", namespace, "--wait=true", "--timeout=120s")
    finally:
        cluster.helm("uninstall", "datasetjob", "--namespace", system, "--wait", "--timeout", "120s", check=False)

    cluster.wait_for(lambda: not cluster.apps.list_namespaced_deployment(system).items
                     and not cluster.core.list_namespaced_pod(system).items, timeout=120,
                     what="release removed", namespace=system)
    assert not [r for r in cluster.rbac.list_cluster_role().items if r.metadata.name == "datasetjob"]
    assert not [s for s in cluster.core.list_namespaced_service_account(system).items
                if s.metadata.name == "datasetjob"]
    assert cluster.apiext.read_custom_resource_definition("datasetjobs.datagen.dev")  # CRDs stay
    keys = s3_server.client().list_objects_v2(Bucket=s3_bucket, Prefix=f"{namespace}/smart-money-flow/")
    assert any(o["Key"].endswith("latest.json") for o in keys.get("Contents", []))  # and so does the data
