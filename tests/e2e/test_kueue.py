"""DatasetJobs queued by Kueue: Kueue v0.17's real controller (scripts/build-kueue.sh) against
the local cluster, admitting the Jobs the chart's operator creates, on the real node."""

from __future__ import annotations

import time

import pytest

from tests.e2e.harness.kueue import NAMESPACE_LABEL, Kueue, KueueError
from tests.e2e.test_operator import apply, get, sample, wait_phase

SELECTOR = "datagen.dev/datasetjob"


@pytest.fixture(scope="module")
def kueue(cluster):
    try:
        k = Kueue(cluster).start()
    except KueueError as exc:
        pytest.fail(f"Kueue did not start:\n{exc}", pytrace=False)
    yield k
    k.stop()


@pytest.fixture
def queue(cluster, kueue, namespace):
    """A LocalQueue `team-a` in the test namespace, backed by a ClusterQueue whose quota holds
    the generate pods of one DatasetJob of `queued_sample` (2 x 100m CPU), not two."""
    key, value = NAMESPACE_LABEL
    cluster.rest.patch(f"/api/v1/namespaces/{namespace}", {"metadata": {"labels": {key: value}}})
    flavor, cq = f"rf-{namespace}"[:63], f"cq-{namespace}"[:63]
    kueue.create({"kind": "ResourceFlavor", "metadata": {"name": flavor}})
    kueue.create(
        {
            "kind": "ClusterQueue",
            "metadata": {"name": cq},
            "spec": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "queueingStrategy": "StrictFIFO",
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu", "memory"],
                        "flavors": [
                            {
                                "name": flavor,
                                "resources": [
                                    {"name": "cpu", "nominalQuota": "250m"},
                                    {"name": "memory", "nominalQuota": "1Gi"},
                                ],
                            }
                        ],
                    }
                ],
            },
        }
    )
    kueue.create(
        {"kind": "LocalQueue", "metadata": {"name": "team-a", "namespace": namespace}, "spec": {"clusterQueue": cq}}
    )
    cluster.wait_for(
        lambda: _queue_active(cluster, namespace), timeout=60, what="LocalQueue team-a active", namespace=namespace
    )
    return "team-a"


def _queue_active(cluster, namespace: str) -> bool:
    lq = cluster.rest.get(f"/apis/kueue.x-k8s.io/v1beta2/namespaces/{namespace}/localqueues/team-a")
    return any(c["type"] == "Active" and c["status"] == "True" for c in (lq.get("status") or {}).get("conditions", []))


def queued_sample(bucket, s3, name: str, queue: str) -> dict:
    doc = sample(bucket, s3, name=name, shards=2)
    spec = doc["spec"]
    spec["queueName"] = queue
    # Slow enough that the second DatasetJob is seen waiting while the first generates.
    spec["generator"]["env"] = [{"name": "SMF_LATENCY_MS", "value": "250"}]
    spec["generator"]["concurrency"] = 1
    spec["generator"]["resources"] = {"requests": {"cpu": "100m", "memory": "128Mi"}}
    spec["combine"]["resources"] = {"requests": {"cpu": "100m", "memory": "128Mi"}}
    return doc


def _condition(obj: dict, type_: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def _job(cluster, namespace: str, name: str):
    return cluster.batch.read_namespaced_job(name, namespace)


def test_the_second_datasetjob_waits_for_quota_and_runs_after_the_first(
    cluster, operator, kueue, queue, namespace, s3, bucket
):
    apply(cluster, namespace, queued_sample(bucket, s3, "first", queue))
    first_run = wait_phase(cluster, operator, namespace, "first", ("Generating", "Queued"))["status"]
    cluster.wait_for(
        lambda: _job(cluster, namespace, first_run["jobs"]["generate"]).spec.suspend is False,
        timeout=60,
        what="Kueue admits the first DatasetJob's generate Job",
        namespace=namespace,
    )
    apply(cluster, namespace, queued_sample(bucket, s3, "second", queue))
    second = wait_phase(cluster, operator, namespace, "second", "Queued", timeout=60)

    queued = _condition(second, "Queued")
    assert (queued.get("status"), queued.get("reason")) == ("True", "WaitingForAdmission"), second["status"]

    # Kueue's own reason, copied from its Workload: the quota is what the second waits for.
    def kueues_reason():
        c = _condition(get(cluster, namespace, "second"), "Queued")
        return c if "insufficient" in c.get("message", "") else None

    queued = cluster.wait_for(
        kueues_reason, timeout=30, what="Kueue's reason in the Queued condition", namespace=namespace
    )
    assert "team-a" in queued["message"] and "cpu" in queued["message"], queued
    row = next(
        line.split()
        for line in cluster.kubectl("get", "dsj", "-n", namespace).stdout.splitlines()
        if line.startswith("second ")
    )
    assert row[1] == "Queued", row
    assert get(cluster, namespace, "first")["status"]["phase"] == "Generating"
    assert cluster.core.list_namespaced_pod(namespace, label_selector=f"{SELECTOR}=second").items == []
    wl = [w for w in kueue.workloads(namespace) if w["metadata"]["name"].startswith("job-second-")]
    assert wl and not any(
        c["type"] == "QuotaReserved" and c["status"] == "True" for c in wl[0].get("status", {}).get("conditions", [])
    ), wl

    first = wait_phase(cluster, operator, namespace, "first", "Succeeded")["status"]
    second = wait_phase(cluster, operator, namespace, "second", "Succeeded")["status"]
    assert first["output"]["rows"] == second["output"]["rows"] == 36
    first_gen = _job(cluster, namespace, first["jobs"]["generate"])
    second_gen = _job(cluster, namespace, second["jobs"]["generate"])
    # Kueue admitted the second only once the first's generate pods gave their quota back.
    assert second_gen.status.start_time >= first_gen.status.completion_time
    for j in (first_gen, second_gen):
        assert j.metadata.labels["kueue.x-k8s.io/queue-name"] == "team-a"
    events = [
        e.reason
        for e in cluster.core.list_namespaced_event(namespace, field_selector="involvedObject.name=second").items
    ]
    assert "WaitingForAdmission" in events


def test_deleting_a_queued_datasetjob_leaves_nothing_behind(cluster, operator, kueue, queue, namespace, s3, bucket):
    big = queued_sample(bucket, s3, "big", queue)
    big["spec"]["generator"]["resources"] = {"requests": {"cpu": "1", "memory": "128Mi"}}  # over the quota
    apply(cluster, namespace, big)
    wait_phase(cluster, operator, namespace, "big", "Queued", timeout=60)
    cluster.wait_for(lambda: kueue.workloads(namespace), timeout=30, what="Kueue's workload", namespace=namespace)
    cluster.kubectl("delete", "dsj", "big", "-n", namespace, "--wait=true")

    def gone():
        selector = f"{SELECTOR}=big"
        return not (
            cluster.batch.list_namespaced_job(namespace, label_selector=selector).items
            or cluster.core.list_namespaced_pod(namespace, label_selector=selector).items
            or cluster.core.list_namespaced_config_map(namespace, label_selector=selector).items
            or cluster.core.list_namespaced_secret(namespace, label_selector=selector).items
            or kueue.workloads(namespace)
        )

    cluster.wait_for(
        gone, timeout=120, what="the queued DatasetJob's Jobs, objects and workload gone", namespace=namespace
    )


def test_kueue_never_loses_a_fight_with_the_operator(cluster, operator, kueue, queue, namespace, s3, bucket):
    """A Job held by Kueue stays held across many operator ticks; the DatasetJob says why."""
    big = queued_sample(bucket, s3, "held", queue)
    big["spec"]["generator"]["resources"] = {"requests": {"cpu": "1", "memory": "128Mi"}}
    apply(cluster, namespace, big)
    st = wait_phase(cluster, operator, namespace, "held", "Queued", timeout=60)["status"]
    time.sleep(4)  # eight active ticks of the operator: none may unsuspend the Job
    assert _job(cluster, namespace, st["jobs"]["generate"]).spec.suspend is True
    assert cluster.core.list_namespaced_pod(namespace, label_selector=f"{SELECTOR}=held").items == []
    assert get(cluster, namespace, "held")["status"]["phase"] == "Queued"
