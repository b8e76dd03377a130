"""Acceptance tests of the local cluster: a real control plane and a real node.

These exercise what the operator relies on: Indexed Jobs with per-index retries and a pod
failure policy, garbage collection, CRD schema + CEL validation with printer columns, RBAC
enforcement for ServiceAccount tokens, and a node that really runs containers: env, volumes,
termination messages, cluster DNS and Services, `kubectl logs`. No test asserts wall-clock times.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.e2e.harness.addons import REPO_ROOT as REPO
from tests.e2e.harness.e2e import condition, condition_true
from tests.e2e.harness.rest import ApiError, KubeRest

WORKER_IMAGE = f"datasetjob/worker:{yaml.safe_load((REPO / 'helm/datasetjob/Chart.yaml').read_text())['appVersion']}"
# These pods test Job and node mechanics, not the product's security settings: root, so a
# hostPath directory of the test is writable.
AS_ROOT = {"runAsUser": 0, "runAsGroup": 0}
JOB_LABEL = "batch.kubernetes.io/job-name"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"

# Writes its index to /data (a hostPath mount of a directory of the test),
# counts attempts, fails index 3 once (exit 1) or always (exit FAIL_CODE if set), and leaves
# a termination message.
INDEX_SCRIPT = textwrap.dedent(
    """
    import os, pathlib, sys
    idx = os.environ["JOB_COMPLETION_INDEX"]
    out = pathlib.Path(os.environ["OUT_DIR"])
    with open(out / f"attempts-{idx}", "a") as f:
        f.write("attempt\\n")
    (out / f"index-{idx}").write_text(idx)
    with open(os.environ.get("DSJ_TERMINATION_LOG", "/dev/termination-log"), "w") as f:
        f.write(f"index {idx}")
    print(f"index {idx} on {os.environ['POD_NAME']}")
    if idx == "3":
        code = int(os.environ.get("FAIL_CODE", "0"))
        if code:
            sys.exit(code)
        if not (out / "failed-once").exists():
            (out / "failed-once").write_text("")
            sys.exit(1)
    """
)


def indexed_job(name: str, data_dir: Path, *, fail_code: int | None = None, **spec) -> dict:
    env = [
        {"name": "OUT_DIR", "value": "/data"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    if fail_code is not None:
        env.append({"name": "FAIL_CODE", "value": str(fail_code)})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completionMode": "Indexed",
            "completions": 5,
            "parallelism": 2,
            "backoffLimitPerIndex": 1,
            **spec,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 5,
                    "securityContext": AS_ROOT,
                    "containers": [
                        {
                            "name": "main",
                            "image": WORKER_IMAGE,
                            "command": ["python", "-c", INDEX_SCRIPT],
                            "env": env,
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                    "volumes": [{"name": "data", "hostPath": {"path": str(data_dir), "type": "Directory"}}],
                }
            },
        },
    }


def job_pods(cluster, ns: str, job: str) -> list[dict]:
    return cluster.rest.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"{JOB_LABEL}={job}")["items"]


def terminated(pod: dict) -> dict:
    return pod["status"]["containerStatuses"][0]["state"]["terminated"]


def attempts(data_dir: Path, index: int) -> int:
    return len((data_dir / f"attempts-{index}").read_text().splitlines())


def test_indexed_job_retries_only_the_failed_index(cluster, namespace, tmp_path):
    cluster.batch.create_namespaced_job(namespace, indexed_job("indexed", tmp_path))

    job = cluster.wait_for_object(
        f"/apis/batch/v1/namespaces/{namespace}/jobs/indexed",
        lambda j: condition_true(j, "Complete") or condition_true(j, "Failed"),
        timeout=180,
        what="Job indexed to finish",
    )
    assert condition_true(job, "Complete"), condition(job, "Failed")
    assert job["status"]["completedIndexes"] == "0-4"
    assert job["status"]["succeeded"] == 5
    assert job["status"]["failed"] == 1

    assert sorted(p.name for p in tmp_path.glob("index-*")) == [f"index-{i}" for i in range(5)]
    assert [attempts(tmp_path, i) for i in range(5)] == [1, 1, 1, 2, 1]

    pods = job_pods(cluster, namespace, "indexed")
    by_index: dict[str, list[tuple[str, int]]] = {}
    for p in pods:
        t = terminated(p)
        by_index.setdefault(p["metadata"]["annotations"][INDEX_ANNOTATION], []).append(
            (p["status"]["phase"], t["exitCode"])
        )
        assert t["message"] == f"index {p['metadata']['annotations'][INDEX_ANNOTATION]}"
        assert t["reason"] == ("Completed" if t["exitCode"] == 0 else "Error")
        assert t["startedAt"] and t["finishedAt"]
    assert sorted(by_index["3"]) == [("Failed", 1), ("Succeeded", 0)]
    for i in ("0", "1", "2", "4"):
        assert by_index[i] == [("Succeeded", 0)]
    some_pod = pods[0]["metadata"]["name"]
    assert f"on {some_pod}" in cluster.pod_log(namespace, some_pod)


def test_pod_failure_policy_fails_the_index_without_retry(cluster, namespace, tmp_path):
    job = indexed_job(
        "pfp",
        tmp_path,
        fail_code=42,
        maxFailedIndexes=1,
        podFailurePolicy={
            "rules": [
                {
                    "action": "FailIndex",
                    "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]},
                }
            ]
        },
    )
    cluster.batch.create_namespaced_job(namespace, job)

    job = cluster.wait_for_object(
        f"/apis/batch/v1/namespaces/{namespace}/jobs/pfp",
        lambda j: condition_true(j, "Failed") or condition_true(j, "Complete"),
        timeout=180,
        what="Job pfp to finish",
    )
    assert condition_true(job, "Failed")
    assert condition(job, "Failed")["reason"] == "FailedIndexes"
    assert job["status"]["failedIndexes"] == "3"
    assert job["status"]["completedIndexes"] == "0-2,4"
    assert attempts(tmp_path, 3) == 1  # FailIndex: no retry despite backoffLimitPerIndex 1

    index3 = [p for p in job_pods(cluster, namespace, "pfp") if p["metadata"]["annotations"][INDEX_ANNOTATION] == "3"]
    assert len(index3) == 1
    assert index3[0]["status"]["phase"] == "Failed"
    assert terminated(index3[0])["exitCode"] == 42


def test_background_deletion_removes_the_pods(cluster, namespace, tmp_path):
    sleeper = textwrap.dedent(
        """
        import os, signal, sys, time
        def stop(*_):
            with open(f"/data/{os.environ['POD_NAME']}", "w") as f:
                f.write("SIGTERM received")
            sys.exit(143)
        signal.signal(signal.SIGTERM, stop)
        print("sleeping", flush=True)
        time.sleep(600)
        """
    )
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "sleepers"},
        "spec": {
            "completionMode": "Indexed",
            "completions": 2,
            "parallelism": 2,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 5,
                    "securityContext": AS_ROOT,
                    "containers": [
                        {
                            "name": "main",
                            "image": WORKER_IMAGE,
                            "command": ["python", "-c", sleeper],
                            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                    "volumes": [{"name": "data", "hostPath": {"path": str(tmp_path), "type": "Directory"}}],
                }
            },
        },
    }
    cluster.batch.create_namespaced_job(namespace, job)
    pods = cluster.wait_for(
        lambda: (lambda ps: ps if len(ps) == 2 and all(p["status"].get("phase") == "Running" for p in ps) else None)(
            job_pods(cluster, namespace, "sleepers")
        ),
        timeout=60,
        what="2 running pods of Job sleepers",
        namespace=namespace,
    )
    names = sorted(p["metadata"]["name"] for p in pods)
    cluster.wait_for(
        lambda: all("sleeping" in cluster.pod_log(namespace, n) for n in names),
        timeout=30,
        what="the pods' processes to start",
        namespace=namespace,
    )

    cluster.rest.delete(
        f"/apis/batch/v1/namespaces/{namespace}/jobs/sleepers",
        {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"},
    )

    cluster.wait_gone(f"/apis/batch/v1/namespaces/{namespace}/jobs/sleepers", timeout=30)
    cluster.wait_for(
        lambda: not job_pods(cluster, namespace, "sleepers"),
        timeout=90,
        what="the garbage collector to remove the Job's pods",
        namespace=namespace,
    )
    for n in names:  # the kubelet stopped each container gracefully
        assert (tmp_path / n).read_text() == "SIGTERM received"


WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.e2e.datagen.dev
spec:
  group: e2e.datagen.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wdg]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: string, jsonPath: .spec.size}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: string, enum: [small, large]}
              replicas: {type: integer, minimum: 1, maximum: 10}
              minReplicas: {type: integer}
              maxReplicas: {type: integer}
            x-kubernetes-validations:
            - rule: "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas"
              message: minReplicas must not exceed maxReplicas
              fieldPath: .minReplicas
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"""


def widget(name: str, **spec) -> str:
    return yaml.safe_dump(
        {"apiVersion": "e2e.datagen.dev/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}
    )


def test_crd_schema_cel_and_printer_columns(cluster, namespace):
    cluster.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    try:
        cluster.wait_for_object(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.e2e.datagen.dev",
            lambda crd: condition_true(crd, "Established"),
            timeout=60,
        )
        # kubectl's discovery cache may need a moment to see the new kind.
        cluster.wait_for(
            lambda: (
                cluster.kubectl(
                    "-n", namespace, "apply", "-f", "-", input=widget("good", size="small", replicas=3), check=False
                ).returncode
                == 0
            ),
            timeout=60,
            what="a valid Widget to be accepted",
            namespace=namespace,
        )

        bad = cluster.kubectl(
            "-n", namespace, "apply", "-f", "-", check=False, input=widget("too-many", size="small", replicas=50)
        )
        assert bad.returncode != 0
        assert "spec.replicas" in bad.stderr, bad.stderr

        bad = cluster.kubectl("-n", namespace, "apply", "-f", "-", check=False, input=widget("odd", size="huge"))
        assert bad.returncode != 0
        assert "spec.size" in bad.stderr and "Unsupported value" in bad.stderr, bad.stderr

        bad = cluster.kubectl(
            "-n",
            namespace,
            "apply",
            "-f",
            "-",
            check=False,
            input=widget("inverted", size="large", minReplicas=5, maxReplicas=2),
        )
        assert bad.returncode != 0
        assert "spec.minReplicas" in bad.stderr, bad.stderr
        assert "minReplicas must not exceed maxReplicas" in bad.stderr, bad.stderr

        out = cluster.kubectl("-n", namespace, "get", "widgets").stdout
        header, *rows = out.splitlines()
        assert header.split() == ["NAME", "SIZE", "REPLICAS", "AGE"]
        assert rows[0].split()[:3] == ["good", "small", "3"]
        assert len(rows) == 1
    finally:
        cluster.kubectl("delete", "crd", "widgets.e2e.datagen.dev", "--wait=false", check=False)


def test_rbac_is_enforced_for_a_service_account_token(cluster, namespace):
    rest = cluster.rest
    rest.post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
    )
    rest.post(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
        },
    )
    rest.post(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    _, tr = rest.post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/reader/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 600},
        },
    )
    token = tr["status"]["token"]

    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(cluster.client_for_token(token))
    # RBAC is evaluated against the cache of bindings: wait until the binding is in effect.
    cluster.wait_for(
        lambda: core.list_namespaced_pod(namespace) is not None,
        timeout=30,
        what="the reader binding to take effect",
        namespace=namespace,
    )

    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "nope"}, "data": {"a": "b"}})
    assert exc.value.status == 403
    assert f"system:serviceaccount:{namespace}:reader" in exc.value.body
    with pytest.raises(ApiException) as exc:
        core.delete_collection_namespaced_pod(namespace)
    assert exc.value.status == 403
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod("default")
    assert exc.value.status == 403

    # kubectl with a kubeconfig for that token agrees.
    kc = cluster.control_plane.write_kubeconfig(
        cluster.control_plane.root / f"reader-{namespace}.kubeconfig", user="reader", token=token, namespace=namespace
    )
    assert cluster.kubectl("auth", "can-i", "list", "pods", kubeconfig=kc, check=False).stdout.strip() == "yes"
    assert cluster.kubectl("auth", "can-i", "create", "configmaps", kubeconfig=kc, check=False).stdout.strip() == "no"
    denied = cluster.kubectl("get", "secrets", kubeconfig=kc, check=False)
    assert denied.returncode != 0 and "Forbidden" in denied.stderr


def test_helm_installs_a_chart_with_a_kube_version_constraint(cluster, namespace, tmp_path):
    """/version reports the pinned release (not v0.0.0-master), so Helm kubeVersion checks pass."""
    version = cluster.rest.get("/version")
    assert version["gitVersion"] == cluster.control_plane.kubernetes_version
    major, minor = version["major"], version["minor"]
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        f'apiVersion: v2\nname: probe\nversion: 0.1.0\nkubeVersion: ">={major}.{minor}.0-0"\n'
    )
    (chart / "templates" / "cm.yaml").write_text(
        textwrap.dedent("""
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}-probe
        data:
          kube: "{{ .Capabilities.KubeVersion.Version }}"
        """)
    )
    cluster.helm("install", "probe", str(chart), "--namespace", namespace, "--wait", "--timeout", "60s")
    cm = cluster.rest.get(f"/api/v1/namespaces/{namespace}/configmaps/probe-probe")
    assert cm["data"]["kube"] == version["gitVersion"]
    assert "probe" in cluster.helm("list", "--namespace", namespace, "--short").stdout.split()


# -- the node runs real containers ------------------------------------------------------------

ENV_SCRIPT = textwrap.dedent(
    """
    import json, os, pathlib, socket
    keys = ["GREETING", "WHO", "FROM_CM", "FROM_SECRET", "CM_color", "POD_NS", "POD_UID", "POD_IP", "CPU_LIMIT"]
    report = {k: os.environ.get(k) for k in keys}
    report["config_file"] = pathlib.Path("/etc/app/settings.json").read_text()
    report["secret_file"] = pathlib.Path("/etc/creds/password").read_text()
    report["uid"] = os.getuid()
    try:
        pathlib.Path("/written-to-root").write_text("x")
        report["root_write"] = "allowed"
    except OSError as exc:
        report["root_write"] = exc.strerror
    with open("/proc/self/status") as f:
        report["cap_eff"] = next(l.split()[1] for l in f if l.startswith("CapEff:"))
    # Cluster DNS and a Service: the API server through the `kubernetes` Service.
    report["kubernetes_ip"] = socket.gethostbyname("kubernetes.default.svc.cluster.local")
    with socket.create_connection(("kubernetes.default", 443), timeout=10):
        report["kubernetes_reachable"] = True
    print(json.dumps(report))
    pathlib.Path("/dev/termination-log").write_text(json.dumps({"ok": True}))
    """
)


def test_pod_env_volumes_dns_security_and_termination_message(cluster, namespace):
    rest = cluster.rest
    rest.post(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "app"},
            "data": {"color": "blue", "settings.json": '{"a": 1}'},
        },
    )
    rest.post(
        f"/api/v1/namespaces/{namespace}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "stringData": {"password": "hunter2"},
        },
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "env-check"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
            "containers": [
                {
                    "name": "main",
                    "image": WORKER_IMAGE,
                    "command": ["python", "-c", ENV_SCRIPT],
                    "envFrom": [{"configMapRef": {"name": "app"}, "prefix": "CM_"}],
                    "env": [
                        {"name": "WHO", "value": "world"},
                        {"name": "GREETING", "value": "hello $(WHO) $$(WHO) $(UNDEFINED)"},
                        {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "color"}}},
                        {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    ],
                    "resources": {"limits": {"cpu": "1500m"}},
                    "securityContext": {
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": "config", "mountPath": "/etc/app"},
                        {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
                    ],
                }
            ],
            "volumes": [
                {
                    "name": "config",
                    "configMap": {"name": "app", "items": [{"key": "settings.json", "path": "settings.json"}]},
                },
                {"name": "creds", "secret": {"secretName": "creds"}},
            ],
        },
    }
    _, created = rest.post(f"/api/v1/namespaces/{namespace}/pods", pod)
    done = cluster.wait_for_object(
        f"/api/v1/namespaces/{namespace}/pods/env-check",
        lambda p: p["status"].get("phase") in ("Succeeded", "Failed"),
        timeout=120,
    )
    log = cluster.pod_log(namespace, "env-check")
    assert done["status"]["phase"] == "Succeeded", log
    assert json.loads(terminated(done)["message"]) == {"ok": True}
    node = next(n for n in cluster.nodes if n.node_name == done["spec"]["nodeName"])
    pod_ip = done["status"]["podIP"]
    assert pod_ip != node.addresses.node_ip  # its own network namespace on the bridge
    report = json.loads(log.strip().splitlines()[-1])
    assert report == {
        "GREETING": "hello world $(WHO) $(UNDEFINED)",
        "WHO": "world",
        "FROM_CM": "blue",
        "FROM_SECRET": "hunter2",
        "CM_color": "blue",
        "POD_NS": namespace,
        "POD_UID": created["metadata"]["uid"],
        "POD_IP": pod_ip,
        "CPU_LIMIT": "2",
        "config_file": '{"a": 1}',
        "secret_file": "hunter2",
        "uid": 65532,
        "root_write": "Read-only file system",
        "cap_eff": "0000000000000000",
        "kubernetes_ip": cluster.node.addresses.kubernetes_service_ip,
        "kubernetes_reachable": True,
    }


def test_missing_image_and_fallback_to_logs(cluster, namespace):
    rest = cluster.rest
    rest.post(
        f"/api/v1/namespaces/{namespace}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "no-image"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "datasetjob/not-built:1.0", "imagePullPolicy": "Never"}],
            },
        },
    )
    rest.post(
        f"/api/v1/namespaces/{namespace}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "crash"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": WORKER_IMAGE,
                        "command": [
                            "python",
                            "-c",
                            "import sys; print('boom: bad config', file=sys.stderr); sys.exit(3)",
                        ],
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                    }
                ],
            },
        },
    )

    def waiting_reason(p):
        statuses = p["status"].get("containerStatuses") or []
        return statuses and (statuses[0]["state"].get("waiting") or {}).get("reason") == "ErrImageNeverPull"

    cluster.wait_for_object(f"/api/v1/namespaces/{namespace}/pods/no-image", waiting_reason, timeout=60)

    crash = cluster.wait_for_object(
        f"/api/v1/namespaces/{namespace}/pods/crash", lambda p: p["status"].get("phase") == "Failed", timeout=120
    )
    t = terminated(crash)
    assert (t["exitCode"], t["reason"]) == (3, "Error")
    assert "boom: bad config" in t["message"]
    # The API server reaches the kubelet's log endpoint on the node's address: kubectl logs works.
    assert "boom: bad config" in cluster.kubectl("-n", namespace, "logs", "crash").stdout


def test_service_account_token_kubeconfig_works_for_rest_client(cluster, namespace):
    """KubeRest (the tests' small client) also works with a limited identity."""
    cluster.rest.post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nobody"}},
    )
    _, tr = cluster.rest.post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/nobody/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 600},
        },
    )
    kc = cluster.control_plane.write_kubeconfig(
        cluster.control_plane.root / f"nobody-{namespace}.kubeconfig",
        user="nobody",
        token=tr["status"]["token"],
        namespace=namespace,
    )
    nobody = KubeRest.from_kubeconfig(kc)
    try:
        with pytest.raises(ApiError) as exc:
            nobody.get(f"/api/v1/namespaces/{namespace}/pods")
        assert exc.value.status == 403
        assert nobody.get("/version")["gitVersion"] == cluster.control_plane.kubernetes_version
    finally:
        nobody.close()
