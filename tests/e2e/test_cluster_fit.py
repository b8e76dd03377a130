"""A DatasetJob among the cluster's other controllers and policies: someone else's Job
suspension is kept, live progress shows with the default cache namespace, the pod settings
users expect reach the pods, the API server checks them, and `kubectl explain` answers."""

from __future__ import annotations

import time

import yaml

from tests.e2e.test_operator import apply, get, sample, wait_phase

SELECTOR = "datagen.dev/datasetjob"


def _gen_job(cluster, namespace: str, name: str):
    st = cluster.wait_for(
        lambda: (get(cluster, namespace, name).get("status") or {}).get("jobs"),
        timeout=60,
        what=f"{name}'s Jobs",
        namespace=namespace,
    )
    return st["generate"]


def test_a_generate_job_suspended_by_someone_else_stays_suspended(cluster, operator, namespace, s3, bucket):
    doc = sample(bucket, s3, name="held", shards=2)
    doc["spec"]["generator"]["env"] = [{"name": "SMF_LATENCY_MS", "value": "250"}]
    doc["spec"]["generator"]["concurrency"] = 1
    apply(cluster, namespace, doc)
    gen = _gen_job(cluster, namespace, "held")
    cluster.kubectl("patch", "job", gen, "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}')

    st = wait_phase(cluster, operator, namespace, "held", "Queued", timeout=60)["status"]
    assert st["reason"] == "JobSuspended" and gen in st["message"]
    time.sleep(4)  # eight active ticks of the operator: none may resume the Job
    assert cluster.batch.read_namespaced_job(gen, namespace).spec.suspend is True
    cluster.wait_for(
        lambda: (
            not [
                p
                for p in cluster.core.list_namespaced_pod(namespace, label_selector=f"{SELECTOR}=held").items
                if p.status.phase in ("Pending", "Running")
            ]
        ),
        timeout=60,
        what="the suspended Job's pods gone",
        namespace=namespace,
    )
    assert get(cluster, namespace, "held")["status"]["phase"] == "Queued"

    cluster.kubectl("patch", "job", gen, "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    st = wait_phase(cluster, operator, namespace, "held", "Succeeded")["status"]
    assert st["output"]["rows"] == 36


def test_live_progress_moves_with_the_default_cache_namespace(cluster, operator, namespace, s3, bucket):
    doc = sample(bucket, s3, symbols=10, dates=12, shards=4)
    doc["spec"].pop("cache")  # the default: <namespace>.<name>, fresh for a fresh namespace
    doc["spec"]["generator"]["env"] = [{"name": "SMF_LATENCY_MS", "value": "100"}]
    doc["spec"]["generator"]["concurrency"] = 1
    apply(cluster, namespace, doc)

    def live_row():  # NAME PHASE SHARDS ITEMS AGE, while no shard has finished
        row = cluster.kubectl("get", "dsj", "smf", "-n", namespace, "--no-headers").stdout.split()
        done, _, total = row[3].partition("/")
        return row if row[1:3] == ["Generating", "0/4"] and total == "120" and 0 < int(done) < 120 else None

    cluster.wait_for(
        live_row, timeout=120, interval=0.1, what="live item progress in kubectl get dsj", namespace=namespace
    )
    st = wait_phase(cluster, operator, namespace, "smf", "Succeeded")["status"]
    assert st["items"]["progress"] == "120/120"


def test_pod_settings_land_on_the_pods(cluster, operator, namespace, s3, bucket):
    priority = f"dsj-{namespace}"[:63]
    runtime = f"dsj-runc-{namespace}"[:63]
    cluster.rest.post(
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": priority},
            "value": 1000,
            "description": "e2e",
        },
    )
    cluster.rest.post(
        "/apis/node.k8s.io/v1/runtimeclasses",
        {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": runtime}, "handler": "runc"},
    )
    cluster.kubectl(
        "create",
        "secret",
        "docker-registry",
        "regcred",
        "-n",
        namespace,
        "--docker-server=registry.invalid",
        "--docker-username=u",
        "--docker-password=p",
    )
    try:
        affinity = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}
                    ]
                }
            }
        }
        spread = [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {SELECTOR: "smf"}},
            }
        ]
        doc = sample(bucket, s3, shards=2)
        doc["spec"]["generator"].update(
            priorityClassName=priority,
            runtimeClassName=runtime,
            affinity=affinity,
            topologySpreadConstraints=spread,
            imagePullSecrets=[{"name": "regcred"}],
            podLabels={"team": "research"},
            podAnnotations={"example.com/owner": "data-team"},
            resources={"requests": {"cpu": "150m", "memory": "200Mi"}, "limits": {"memory": "1Gi"}},
        )
        doc["spec"]["combine"]["resources"] = {"requests": {"cpu": "120m", "memory": "300Mi"}}
        apply(cluster, namespace, doc)
        wait_phase(cluster, operator, namespace, "smf", "Succeeded")

        pods = cluster.core.list_namespaced_pod(namespace, label_selector=f"{SELECTOR}=smf").items
        roles = sorted(p.metadata.labels["datagen.dev/role"] for p in pods)
        assert roles == ["combine", "generate", "generate"], roles
        for p in pods:
            s = p.spec
            assert (s.priority_class_name, s.priority, s.runtime_class_name) == (priority, 1000, runtime)
            assert s.affinity.node_affinity.required_during_scheduling_ignored_during_execution is not None
            assert s.topology_spread_constraints[0].topology_key == "kubernetes.io/hostname"
            assert [r.name for r in s.image_pull_secrets] == ["regcred"]
            assert p.metadata.labels["team"] == "research"
            assert p.metadata.annotations["example.com/owner"] == "data-team"
            requests = s.containers[0].resources.requests
            if p.metadata.labels["datagen.dev/role"] == "generate":
                assert (requests["cpu"], requests["memory"]) == ("150m", "200Mi")
                assert s.containers[0].resources.limits["memory"] == "1Gi"
            else:
                assert (requests["cpu"], requests["memory"]) == ("120m", "300Mi")
    finally:
        cluster.rest.delete(f"/apis/scheduling.k8s.io/v1/priorityclasses/{priority}", ok_statuses=(404,))
        cluster.rest.delete(f"/apis/node.k8s.io/v1/runtimeclasses/{runtime}", ok_statuses=(404,))


def test_pods_without_resources_get_the_charts_default_requests(cluster, operator, namespace, s3, bucket):
    apply(cluster, namespace, sample(bucket, s3, shards=1))
    wait_phase(cluster, operator, namespace, "smf", "Succeeded")
    by_role = {
        p.metadata.labels["datagen.dev/role"]: p.spec.containers[0].resources.requests
        for p in cluster.core.list_namespaced_pod(namespace, label_selector=f"{SELECTOR}=smf").items
    }
    assert by_role["generate"] == {"cpu": "100m", "memory": "256Mi"}
    assert by_role["combine"] == {"cpu": "100m", "memory": "512Mi"}


BAD_POD_SETTINGS = {
    "bad quantity": (
        lambda s: s["generator"].update(resources={"requests": {"cpu": "lots"}}),
        "spec.generator.resources.requests.cpu: Invalid value",
    ),
    "unknown spread policy": (
        lambda s: s["generator"].update(
            topologySpreadConstraints=[{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Maybe"}]
        ),
        "spec.generator.topologySpreadConstraints[0].whenUnsatisfiable: Unsupported value",
    ),
    "pull secret without name": (
        lambda s: s["generator"].update(imagePullSecrets=[{}]),
        "spec.generator.imagePullSecrets[0].name: Required value",
    ),
    "priority class not a name": (
        lambda s: s["generator"].update(priorityClassName="Not A Name"),
        "spec.generator.priorityClassName: Invalid value",
    ),
    "label value too long": (
        lambda s: s["generator"].update(podLabels={"team": "x" * 64}),
        "spec.generator.podLabels.team: Too long",
    ),
    "unknown affinity kind": (
        lambda s: s["generator"].update(affinity={"nodeAffinty": {}}),
        'unknown field "spec.generator.affinity.nodeAffinty"',
    ),
    "queue name not a name": (lambda s: s.update(queueName="Team A"), "spec.queueName: Invalid value"),
    "combine resources typo": (
        lambda s: s["combine"].update(resources={"request": {"cpu": "1"}}),
        'unknown field "spec.combine.resources.request"',
    ),
}


def test_bad_pod_settings_are_rejected_by_the_api_server(cluster, operator, namespace, s3):
    failures = {}
    for case, (change, expected) in BAD_POD_SETTINGS.items():
        doc = sample("bucket", s3, name="bad")
        change(doc["spec"])
        res = cluster.kubectl(
            "apply", "-n", namespace, "--validate=strict", "-f", "-", input=yaml.safe_dump(doc), check=False
        )
        if res.returncode == 0 or expected not in res.stderr:
            failures[case] = res.stderr.strip()[-300:] or "accepted"
    assert not failures, failures


def test_kubectl_explain_answers_for_the_new_fields(cluster):
    for path, words in (
        ("datasetjob.spec.queueName", "LocalQueue"),
        ("datasetjob.spec.generator.topologySpreadConstraints", "spread"),
        ("datasetjob.spec.combine.resources.requests", "cpu"),
        ("datasetjob.spec.cache.namespace", "<namespace>.<name>"),
    ):
        out = cluster.kubectl("explain", path).stdout
        assert words in out, out
