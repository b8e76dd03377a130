"""A universe of a million items on the real node, in pods of 256 MiB: each worker computes its
own slice of the range instead of holding the universe, so no pod is OOM-killed, and the
combine streams the shards into one dataset."""

from __future__ import annotations

import time

from tests.e2e.test_operator import apply, get, s3_sha, sample, wait_phase

ITEMS, SHARDS = 1_000_000, 100
SMALL_POD = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}


def million(bucket: str, s3) -> dict:
    doc = sample(bucket, s3, name="million", shards=SHARDS)
    spec = doc["spec"]
    spec["parallelism"] = 4
    spec["items"] = {"range": {"stop": ITEMS}}
    spec["generator"] = {
        "image": spec["generator"]["image"],
        "function": "smart_money.synthetic:square",
        "resources": SMALL_POD,
    }
    spec["combine"] = {"resources": SMALL_POD}
    spec.pop("cache", None)
    return doc


def oom_killed(cluster, namespace: str) -> list[str]:
    """Pods of the namespace whose container was ever OOM-killed."""
    killed = []
    for pod in cluster.core.list_namespaced_pod(namespace).items:
        for status in pod.status.container_statuses or []:
            for state in (status.state, status.last_state):
                if state and state.terminated and state.terminated.reason == "OOMKilled":
                    killed.append(pod.metadata.name)
    return killed


def test_a_million_items_in_pods_of_256_mib(cluster, operator, s3_ns, s3, bucket):
    apply(cluster, s3_ns, million(bucket, s3))
    seen: set[str] = set()  # the Items column of `kubectl get dsj` while the run goes
    deadline = time.monotonic() + 1200
    while time.monotonic() < deadline:
        lines = cluster.kubectl("get", "dsj", "million", "-n", s3_ns).stdout.splitlines()
        row = dict(zip(lines[0].split(), lines[1].split(), strict=False)) if len(lines) > 1 else {}
        if row.get("ITEMS"):
            seen.add(row["ITEMS"])
        if row.get("PHASE") in ("Succeeded", "Failed"):
            break
        time.sleep(2)
    st = wait_phase(cluster, operator, s3_ns, "million", "Succeeded", timeout=60)["status"]
    assert st["items"]["done"] == ITEMS and st["output"]["rows"] == ITEMS
    assert st["output"]["sha256"] == s3_sha(s3, st["output"]["uri"])
    partial = {p for p in seen if p.split("/")[0] not in ("0", str(ITEMS))}
    assert partial, f"kubectl get dsj never showed the run part-way: {sorted(seen)}"
    assert oom_killed(cluster, s3_ns) == []
    pods = cluster.core.list_namespaced_pod(s3_ns).items
    limits = {
        p.spec.containers[0].resources.limits.get("memory") for p in pods if p.spec.containers[0].resources.limits
    }
    assert limits == {"256Mi"}, limits
    assert get(cluster, s3_ns, "million")["status"]["shards"]["progress"] == f"{SHARDS}/{SHARDS}"
