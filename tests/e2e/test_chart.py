"""The Helm chart and the plain manifests, installed for real on the local cluster: the
cluster fixture installs the chart as a user would (local images, default output on the
in-cluster S3 server), and the operator, its Redis and every worker run from the project's
images on the real node, under the chart's RBAC and security settings."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import yaml

from tests.e2e.chart_operator import ChartOperator
from tests.e2e.harness.addons import BUCKET
from tests.e2e.harness.addons import REPO_ROOT as REPO

CHART = REPO / "helm" / "datasetjob"
GROUP, VERSION, PLURAL = "datagen.dev", "v1alpha1", "datasetjobs"


def test_helm_lint(cluster):
    out = cluster.helm("lint", str(CHART))
    assert "0 chart(s) failed" in out.stdout


def test_rendered_manifests_are_up_to_date():
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "render-manifests.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "values",
    [
        [],
        [
            "--set",
            "watchNamespaces={team-a,team-b}",
            "--set",
            "redis.enabled=false",
            "--set",
            "externalRedis.url=redis://redis.example:6379/0",
            "--set",
            "operator.resources.limits.memory=1Gi",
            "--set",
            "operator.resources.requests.cpu=200m",
            "--set",
            "metrics.enabled=false",
            "--set",
            "defaultOutput.prefix=s3://ml-datasets",
        ],
    ],
    ids=["defaults", "namespaced-no-redis-custom-resources"],
)
def test_rendered_chart_passes_server_side_dry_run(cluster, values):
    for ns in ("datasetjob-system", "team-a", "team-b"):
        cluster.kubectl("create", "namespace", ns, check=False)
    rendered = cluster.helm("template", "datasetjob", str(CHART), "--namespace", "datasetjob-system", *values).stdout
    res = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
    assert "(server dry run)" in res.stdout
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
    "worker.resources.generate.requests.cpu=lots": "at '/worker/resources/generate/requests/cpu'",
    "worker.resources.combine.request.cpu=1": "additional properties 'request' not allowed",
}


@pytest.mark.parametrize("setting", sorted(BAD_VALUES))
def test_values_schema_rejects_bad_values(cluster, setting):
    res = cluster.helm("template", "datasetjob", str(CHART), "--set", setting, check=False)
    assert res.returncode != 0
    assert BAD_VALUES[setting] in res.stderr, res.stderr


def test_cluster_role_is_least_privilege_and_explained():
    rendered = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, 'scripts'); "
            "import importlib.util as u; s = u.spec_from_file_location('r', 'scripts/render-manifests.py'); "
            "m = u.module_from_spec(s); s.loader.exec_module(m); print(m.install_text())",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout
    roles = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in ("ClusterRole", "Role")]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule
    source = (CHART / "templates" / "_helpers.tpl").read_text() + (CHART / "templates" / "rbac.yaml").read_text()
    lines = source.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("- apiGroups:"):
            assert lines[i - 1].strip().startswith("#"), (
                f"rule without a comment: {line.strip()} after {lines[i - 1]!r}"
            )


def wait_succeeded(cluster, namespace: str, name: str, timeout: float = 900) -> dict:
    def published():
        obj = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        phase = (obj.get("status") or {}).get("phase")
        assert phase != "Failed", json.dumps(obj.get("status"), indent=1)
        return obj if phase == "Succeeded" else None

    return cluster.wait_for(
        published,
        timeout=timeout,
        what=f"{name} Succeeded",
        namespace=namespace,
        objects=[f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"],
    )


def test_the_unmodified_sample_succeeds_under_the_installed_chart(cluster, namespace, s3):
    """What the README promises after `make cluster`: `kubectl apply -f` of the sample as it is."""
    cluster.kubectl("apply", "-n", namespace, "-f", str(REPO / "manifests" / "samples" / "smart-money-flow.yaml"))
    st = wait_succeeded(cluster, namespace, "smart-money-flow")["status"]
    assert st["items"]["total"] == 3600 and st["output"]["rows"] == 3600 and st["shards"]["progress"] == "10/10"
    uri = st["output"]["uri"]
    assert uri.startswith(f"s3://{BUCKET}/{namespace}/smart-money-flow/runs/{st['runId']}/")
    body = s3.client().get_object(Bucket=BUCKET, Key=uri.removeprefix(f"s3://{BUCKET}/"))["Body"].read()
    assert len(body.decode().splitlines()) == 3600 + 1  # header + rows

    shard = next(
        p.metadata.name
        for p in cluster.core.list_namespaced_pod(namespace, label_selector="datagen.dev/role=generate").items
        if p.status.phase == "Succeeded"
    )
    assert "committed" in cluster.kubectl("logs", "-n", namespace, shard).stdout
    log = ChartOperator(cluster).log_tail(400)
    assert "Forbidden" not in log and " 403" not in log, log[-2000:]


WRITE_PROBE = textwrap.dedent(
    """
    import json, os, pathlib
    out = {"uid": os.getuid(), "gid": os.getgid()}
    for path in ("/probe", "/opt/datasetjob/probe", "/tmp/probe"):
        try:
            pathlib.Path(path).write_text("x")
            out[path] = "written"
        except OSError as exc:
            out[path] = exc.strerror
    with open("/proc/self/status") as f:
        out["cap_eff"] = next(l.split()[1] for l in f if l.startswith("CapEff:"))
        f.seek(0)
        out["no_new_privs"] = next(l.split()[1] for l in f if l.startswith("NoNewPrivs:"))
    print(json.dumps(out))
    """
)


def test_generator_pods_run_non_root_with_a_read_only_root(cluster, namespace):
    """The operator's own pod template, run as it is by the real runtime with a probe as command."""
    doc = yaml.safe_load((REPO / "manifests" / "samples" / "smart-money-flow.yaml").read_text())
    doc["spec"]["suspend"] = True  # the Job and its template exist, no pods run
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))
    job = cluster.wait_for(
        lambda: next(
            iter(
                cluster.rest.get(
                    f"/apis/batch/v1/namespaces/{namespace}/jobs", labelSelector="datagen.dev/role=generate"
                )["items"]
            ),
            None,
        ),
        timeout=60,
        what="the generate Job",
        namespace=namespace,
    )
    template = job["spec"]["template"]
    template["spec"]["containers"][0]["command"] = ["python", "-c", WRITE_PROBE]
    template["spec"]["containers"][0].pop("args", None)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe"},
        "spec": {**template["spec"], "restartPolicy": "Never"},
    }
    cluster.rest.post(f"/api/v1/namespaces/{namespace}/pods", pod)
    done = cluster.wait_for_object(
        f"/api/v1/namespaces/{namespace}/pods/probe",
        lambda p: p["status"].get("phase") in ("Succeeded", "Failed"),
        timeout=120,
    )
    log = cluster.pod_log(namespace, "probe")
    assert done["status"]["phase"] == "Succeeded", log
    report = json.loads(log.strip().splitlines()[-1])
    assert report == {
        "uid": 65532,
        "gid": 65532,
        "/probe": "Read-only file system",
        "/opt/datasetjob/probe": "Read-only file system",
        "/tmp/probe": "written",
        "cap_eff": "0000000000000000",
        "no_new_privs": "1",
    }


def test_a_second_release_installs_and_uninstalls_cleanly(cluster, namespace):
    """A namespaced release beside the cluster's own: its operator starts under its Role, and
    `helm uninstall` removes its objects but keeps the CRD."""
    system = f"dsj-second-{namespace[-5:]}"
    values = {"watchNamespaces": [namespace], "redis": {"enabled": False}, "metrics": {"enabled": False}}
    cluster.helm(
        "install",
        "second",
        str(CHART),
        "--namespace",
        system,
        "--create-namespace",
        "--wait",
        "--timeout",
        "180s",
        "-f",
        "-",
        input=yaml.safe_dump(values),
    )
    try:
        pods = cluster.core.list_namespaced_pod(system, label_selector="app.kubernetes.io/component=operator").items
        assert len(pods) == 2 and {p.status.phase for p in pods} == {"Running"}  # the default replicas
        assert pods[0].spec.containers[0].command == ["dsj", "operator"]
        assert cluster.rbac.list_namespaced_role(namespace, label_selector="app.kubernetes.io/instance=second").items
    finally:
        cluster.helm("uninstall", "second", "--namespace", system, "--wait", "--timeout", "120s", check=False)
    cluster.wait_for(
        lambda: (
            not cluster.apps.list_namespaced_deployment(system).items
            and not cluster.core.list_namespaced_pod(system).items
        ),
        timeout=120,
        what="release removed",
        namespace=system,
    )
    assert not cluster.rbac.list_namespaced_role(namespace, label_selector="app.kubernetes.io/instance=second").items
    assert not [
        s for s in cluster.core.list_namespaced_service_account(system).items if s.metadata.name.startswith("second")
    ]
    assert cluster.apiext.read_custom_resource_definition("datasetjobs.datagen.dev")  # CRDs stay
    # The cluster's own operator is untouched.
    assert ChartOperator(cluster).pod_name()
    cluster.kubectl("delete", "namespace", system, "--wait=false", check=False)
