"""The operator on the local cluster: the chart's operator pod, the worker and combine pods
from the project's images on the real node, the chart's Redis and the in-cluster S3 server,
all reached by their Service names."""

from __future__ import annotations

import hashlib
import json
import time
import uuid

import pytest
import yaml

from tests.e2e.harness.e2e import WaitTimeout
from tests.integration.runs import SAMPLE, local_dataset, sha256

GROUP, VERSION, PLURAL = "datagen.dev", "v1alpha1", "datasetjobs"


def sample(bucket: str, s3, name="smf", symbols=6, dates=6, shards=3, **spec_over) -> dict:
    doc = yaml.safe_load(SAMPLE.read_text())
    doc["metadata"] = {"name": name}
    spec = doc["spec"]
    spec["items"]["product"]["symbol"] = spec["items"]["product"]["symbol"][:symbols]
    spec["items"]["product"]["date"] = spec["items"]["product"]["date"][:dates]
    spec["shards"] = spec["parallelism"] = shards
    spec["generator"]["env"] = [{"name": "SMF_LATENCY_MS", "value": "1"}]
    spec["retries"] = {"perShard": 1, "maxFailedShards": 0}
    spec["cache"] = {"namespace": f"{name}-{uuid.uuid4().hex[:8]}"}  # no warm cache from other tests
    spec["output"] = {
        "uri": f"s3://{bucket}/{name}",
        "format": "csv",
        "endpointUrl": s3.endpoint_url,
        "credentialsSecret": "s3-credentials",
    }
    spec.update(spec_over)
    return doc


def apply(cluster, namespace: str, doc: dict) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc, sort_keys=False))


def get(cluster, namespace: str, name: str) -> dict:
    return cluster.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def wait_phase(
    cluster, operator, namespace: str, name: str, phases, timeout: float = 240, not_run: str | None = None
) -> dict:
    phases = (phases,) if isinstance(phases, str) else tuple(phases)

    def ready(obj):
        st = obj.get("status") or {}
        return obj if st.get("phase") in phases and (not_run is None or st.get("runId") != not_run) else None

    try:
        return cluster.wait_for(
            lambda: ready(get(cluster, namespace, name)),
            timeout=timeout,
            what=f"{name} in phase {phases}",
            namespace=namespace,
            objects=[f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"],
        )
    except WaitTimeout as exc:
        raise WaitTimeout(f"{exc}\n--- operator log ---\n{operator.log_tail(80)}") from None


def jobs(cluster, namespace: str) -> list[str]:
    return sorted(j.metadata.name for j in cluster.batch.list_namespaced_job(namespace).items)


def s3_sha(s3, uri: str) -> str:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return hashlib.sha256(s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()


def test_sample_succeeds_with_the_local_runners_dataset(cluster, operator, s3_ns, s3, bucket, tmp_path):
    doc = sample(bucket, s3)
    apply(cluster, s3_ns, doc)
    obj = wait_phase(cluster, operator, s3_ns, "smf", "Succeeded")
    st = obj["status"]
    assert st["shards"]["progress"] == "3/3" and st["items"] == {
        "total": 36,
        "done": 36,
        "failed": 0,
        "generated": 36,
        "reused": 0,
        "progress": "36/36",
    }
    assert st["output"]["rows"] == 36 and st["cache"]["misses"] == 6 + 6 + 36

    dataset = local_dataset(doc, tmp_path)
    assert s3_sha(s3, st["output"]["uri"]) == sha256(dataset) == st["output"]["sha256"]

    table = cluster.kubectl("get", "dsj", "-n", s3_ns).stdout
    header = table.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "SHARDS", "ITEMS", "ROWS", "AGE"], table
    assert table.splitlines()[1].split()[:5] == ["smf", "Succeeded", "3/3", "36/36", "36"], table
    reasons = [
        e.reason for e in cluster.core.list_namespaced_event(s3_ns, field_selector="involvedObject.name=smf").items
    ]
    assert {"RunStarted", "CombineStarted", "Published"} <= set(reasons)


def shared_state(redis, doc: dict, **keys: str) -> dict:
    """Points the sample's fault-injection knobs at the chart's Redis: pods share no files."""
    env = doc["spec"]["generator"]["env"]
    env.append({"name": "SMF_SHARED_REDIS_URL", "value": redis.url})
    env.extend({"name": k, "value": v} for k, v in keys.items())
    return doc


def s3_keys(s3, bucket: str, prefix: str) -> dict[str, object]:
    out = {}
    for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.update({o["Key"]: o["LastModified"] for o in page.get("Contents", [])})
    return out


@pytest.mark.parametrize("budget", [1, 0])
def test_a_shard_that_always_fails(cluster, operator, s3_ns, s3, bucket, budget):
    doc = sample(bucket, s3, shards=3, retries={"perShard": 1, "maxFailedShards": budget})
    doc["spec"]["combine"]["minItemSuccessRatio"] = 0.5
    # Shard 1 holds items 12..23: AAA..ADV x 6 dates → its first item is ACO:2023-01-31.
    doc["spec"]["generator"]["env"].append({"name": "SMF_CRASH_ITEM", "value": "ACO:2023-01-31"})
    apply(cluster, s3_ns, doc)
    obj = wait_phase(cluster, operator, s3_ns, "smf", ("Succeeded", "Failed"))
    st = obj["status"]
    assert st["shards"]["failedIndexes"] == "1" and st["shards"]["succeededIndexes"] == "0,2"
    assert st["failures"][0]["shard"] == 1 and st["failures"][0]["exitCode"] == 3
    if budget:
        assert st["phase"] == "Succeeded" and st["output"]["missingShards"] == "1"
        assert st["output"]["rows"] == 24 and st["items"]["done"] == 24
    else:
        assert (st["phase"], st["reason"]) == ("Failed", "ShardsFailed")
        assert "1 of 3 shards failed (indexes 1)" in st["message"] and "retry-failed" in st["message"]
        assert "combine" not in " ".join(jobs(cluster, s3_ns))


def test_failing_items_are_counted_and_the_dataset_published(cluster, operator, s3_ns, s3, bucket):
    from smart_money.api import _unit

    doc = sample(bucket, s3, symbols=10, dates=12, shards=4)
    doc["spec"]["generator"]["env"].append({"name": "SMF_FAIL_RATIO", "value": "0.05"})
    doc["spec"]["combine"]["minItemSuccessRatio"] = 0.9
    product = doc["spec"]["items"]["product"]
    failing = [(s, d) for s in product["symbol"] for d in product["date"] if _unit("fail", s, d) < 50_000]
    assert failing
    apply(cluster, s3_ns, doc)
    st = wait_phase(cluster, operator, s3_ns, "smf", "Succeeded")["status"]
    assert st["items"]["failed"] == len(failing) and st["items"]["done"] == 120 - len(failing)
    assert st["output"]["rows"] == 120 - len(failing)
    body = s3.client().get_object(Bucket=bucket, Key=f"smf/runs/{st['runId']}/failures/shard-00000.jsonl")
    recorded = [json.loads(line) for line in body["Body"].read().decode().splitlines()]
    assert all("upstream returned 502" in r["error"] for r in recorded)


def test_spec_change_starts_a_new_run_and_reapply_changes_nothing(cluster, operator, s3_ns, s3, bucket):
    doc = sample(bucket, s3)
    apply(cluster, s3_ns, doc)
    first = wait_phase(cluster, operator, s3_ns, "smf", "Succeeded")["status"]
    before = jobs(cluster, s3_ns)
    apply(cluster, s3_ns, doc)  # GitOps re-sync of the same spec
    time.sleep(4)  # several resync periods: nothing may happen
    assert jobs(cluster, s3_ns) == before
    assert get(cluster, s3_ns, "smf")["status"]["runId"] == first["runId"]

    doc["spec"]["combine"]["sortBy"] = ["date", "symbol"]
    apply(cluster, s3_ns, doc)
    second = wait_phase(cluster, operator, s3_ns, "smf", "Succeeded", not_run=first["runId"])
    st = second["status"]
    assert st["runId"] != first["runId"] and st["observedGeneration"] == second["metadata"]["generation"]
    # Every item is stored already: the run plans, finds nothing to generate and only combines.
    new = sorted(set(jobs(cluster, s3_ns)) - set(before))
    assert [name.rsplit("-", 1)[1] for name in new] == ["combine", "plan"], new
    assert st["plan"]["packets"] == 0 and st["items"]["reused"] == 36
    assert st["output"]["sha256"] != first["output"]["sha256"] and st["output"]["rows"] == 36


def test_operator_killed_during_generation_and_combine(cluster, operator, s3_ns, s3, bucket):
    doc = sample(bucket, s3, symbols=10, dates=12, shards=4)
    doc["spec"]["generator"]["env"] = [{"name": "SMF_LATENCY_MS", "value": "100"}]
    doc["spec"]["generator"]["concurrency"] = 1
    apply(cluster, s3_ns, doc)

    def live():  # item counts move while shards run: they come from the workers' Redis progress
        st = get(cluster, s3_ns, "smf").get("status") or {}
        return (
            st.get("phase") == "Generating" and st["shards"]["succeeded"] == 0 and 0 < st["items"]["done"] < 120 and st
        )

    cluster.wait_for(live, timeout=120, interval=0.1, what="live item progress", namespace=s3_ns)
    operator.kill()
    time.sleep(1)
    operator.start()
    cluster.wait_for(
        lambda: any(n.endswith("-combine") for n in jobs(cluster, s3_ns)),
        timeout=240,
        what="combine Job",
        namespace=s3_ns,
    )
    operator.kill()  # as soon as the combine Job exists
    time.sleep(2)
    operator.start()
    st = wait_phase(cluster, operator, s3_ns, "smf", "Succeeded")["status"]
    names = jobs(cluster, s3_ns)
    assert names == sorted([f"smf-{st['runId']}-combine", f"smf-{st['runId']}-gen"]), names
    pods = cluster.core.list_namespaced_pod(s3_ns, label_selector="datagen.dev/role=combine").items
    assert len(pods) == 1
    assert st["items"]["done"] == 120 and st["output"]["rows"] == 120


def test_retry_failed_reruns_only_the_failed_shards(cluster, operator, s3_ns, s3, bucket, redis):
    doc = sample(bucket, s3, shards=3, retries={"perShard": 0, "maxFailedShards": 0})
    shared_state(redis, doc, SMF_CRASH_ITEM="ACO:2023-01-31", SMF_CRASH_ONCE_KEY=f"crash-once-{s3_ns}")
    apply(cluster, s3_ns, doc)
    failed = wait_phase(cluster, operator, s3_ns, "smf", "Failed")["status"]
    assert failed["shards"]["failedIndexes"] == "1"
    run = failed["runId"]
    committed = s3_keys(s3, bucket, f"smf/runs/{run}/shards/")

    out = cluster.kubectl("annotate", "dsj", "smf", "-n", s3_ns, "datagen.dev/retry-failed=1")
    assert out.returncode == 0
    st = wait_phase(cluster, operator, s3_ns, "smf", "Succeeded")["status"]
    assert st["runId"] == run and st["attempt"] != "0" and st["items"]["done"] == 36
    after = s3_keys(s3, bucket, f"smf/runs/{run}/shards/")
    for shard in ("shard-00000", "shard-00002"):  # committed before: not rewritten
        assert after[f"smf/runs/{run}/shards/{shard}.csv"] == committed[f"smf/runs/{run}/shards/{shard}.csv"]
    assert f"smf/runs/{run}/shards/shard-00001.csv" in after


def test_deleting_the_datasetjob_collects_its_children(cluster, operator, s3_ns, s3, bucket):
    apply(cluster, s3_ns, sample(bucket, s3))
    wait_phase(cluster, operator, s3_ns, "smf", "Succeeded")
    assert (
        jobs(cluster, s3_ns)
        and cluster.core.list_namespaced_config_map(s3_ns, label_selector="datagen.dev/datasetjob=smf").items
    )
    cluster.kubectl("delete", "dsj", "smf", "-n", s3_ns, "--wait=true")

    def gone():
        selector = "datagen.dev/datasetjob=smf"
        return not (
            cluster.batch.list_namespaced_job(s3_ns, label_selector=selector).items
            or cluster.core.list_namespaced_pod(s3_ns, label_selector=selector).items
            or cluster.core.list_namespaced_config_map(s3_ns, label_selector=selector).items
        )

    cluster.wait_for(gone, timeout=120, what="children garbage-collected", namespace=s3_ns)
    assert s3_keys(s3, bucket, "smf/latest.json")  # the data stays


MALFORMED = {
    "missing items": (lambda s: s.pop("items"), "spec.items: Required value"),
    "two sources": (lambda s: s["items"].update(values=["x"]), "spec.items"),
    "shards 0": (lambda s: s.update(shards=0), "spec.shards: Invalid value: 0"),
    "unknown format": (lambda s: s["output"].update(format="xlsx"), "spec.output.format: Unsupported value"),
    "unknown field": (lambda s: s.update(shardz=3), 'unknown field "spec.shardz"'),
    "command without outputFile": (
        lambda s: s.update(generator={"command": ["x"]}),
        "spec.generator.outputFile: Invalid value",
    ),
    "function and command": (
        lambda s: s["generator"].update(command=["x"]),
        "exactly one of function and command must be set",
    ),
    "negative TTL": (lambda s: s.update(cache={"ttlSeconds": -1}), "spec.cache.ttlSeconds: Invalid value: -1"),
    "parallelism over shards": (lambda s: s.update(parallelism=9), "spec.parallelism: Invalid value"),
    "empty product list": (lambda s: s["items"]["product"].update(date=[]), "spec.items.product.date: Invalid value"),
    "range stop before start": (
        lambda s: s.update(items={"range": {"start": 5, "stop": 1}}),
        "stop must be greater than start",
    ),
    "maxFailedShards too high": (
        lambda s: s.update(retries={"maxFailedShards": 3}),
        "spec.retries.maxFailedShards: Invalid value",
    ),
    "http output": (lambda s: s["output"].update(uri="http://x"), "spec.output.uri: Invalid value"),
    "zero concurrency": (lambda s: s["generator"].update(concurrency=0), "spec.generator.concurrency: Invalid value"),
    "zero rate": (
        lambda s: s.update(rateLimit={"requestsPerSecond": 0}),
        "spec.rateLimit.requestsPerSecond: Invalid value",
    ),
    "string shards": (lambda s: s.update(shards="ten"), "spec.shards: Invalid value"),
    "unknown column type": (
        lambda s: s["combine"].update(columns={"a": "decimal"}),
        "spec.combine.columns.a: Unsupported value",
    ),
    "ratio over one": (
        lambda s: s["combine"].update(minItemSuccessRatio=2),
        "spec.combine.minItemSuccessRatio: Invalid value",
    ),
    "bad function reference": (
        lambda s: s["generator"].update(function="not a ref"),
        "spec.generator.function: Invalid value",
    ),
}


def test_malformed_datasetjobs_are_rejected_by_the_api_server(cluster, operator, namespace, s3):
    rejected = {}
    for case, (change, expected) in MALFORMED.items():
        doc = sample("bucket", s3, name="bad")
        change(doc["spec"])
        res = cluster.kubectl(
            "apply", "-n", namespace, "--validate=strict", "-f", "-", input=yaml.safe_dump(doc), check=False
        )
        rejected[case] = (res.returncode != 0 and expected in res.stderr, res.stderr.strip()[-300:])
    failures = {k: v[1] for k, v in rejected.items() if not v[0]}
    assert not failures, json.dumps(failures, indent=1)
    assert len(rejected) >= 12
    assert cluster.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"] == []


def test_two_datasetjobs_share_one_rate_limit(cluster, operator, s3_ns, s3, bucket, redis):
    calls = f"calls-{s3_ns}"
    rps, burst = 20.0, 5
    for name in ("smf-a", "smf-b"):
        doc = sample(bucket, s3, name=name, shards=2)
        doc["spec"]["rateLimit"] = {"requestsPerSecond": rps, "burst": burst, "scope": f"market-api-{s3_ns}"}
        doc["spec"]["cache"] = {"namespace": f"{name}-{uuid.uuid4().hex[:8]}"}  # every call is upstream
        apply(cluster, s3_ns, shared_state(redis, doc, SMF_CALL_LOG_KEY=calls))
    for name in ("smf-a", "smf-b"):
        wait_phase(cluster, operator, s3_ns, name, "Succeeded")
    stamps = sorted(float(x) for x in redis.client().lrange(calls, 0, -1))
    assert len(stamps) == 2 * (6 + 6 + 36)
    worst = 0.0
    for i, start in enumerate(stamps):  # every window [start, t]: calls <= rps * (t - start) + burst
        for j in range(i, len(stamps)):
            worst = max(worst, (j - i + 1) - (rps * (stamps[j] - start) + burst))
    assert worst <= 1e-6 + 1, f"the shared limit was exceeded by {worst:.2f} calls"


def test_cluster_cli_status_logs_and_regenerate(cluster, operator, s3_ns, s3, bucket):
    import os
    import subprocess
    import sys
    import urllib.request

    apply(cluster, s3_ns, sample(bucket, s3))
    first = wait_phase(cluster, operator, s3_ns, "smf", "Succeeded")["status"]
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig), COLUMNS="200")

    def dsj_cli(*args):
        proc = subprocess.run(
            [sys.executable, "-m", "datasetjob", *args, "-n", s3_ns],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    status = dsj_cli("status", "smf")
    assert "Succeeded" in status and "36/36 done" in status and "Published" in status
    assert json.loads(dsj_cli("status", "smf", "-o", "json"))["runId"] == first["runId"]
    assert "shard-00000 committed" in dsj_cli("logs", "smf", "--shard", "0")
    assert "published" in dsj_cli("logs", "smf", "--combine")

    dsj_cli("regenerate", "smf")
    again = wait_phase(cluster, operator, s3_ns, "smf", "Succeeded", not_run=first["runId"])["status"]
    assert again["output"]["sha256"] == first["output"]["sha256"]  # same spec, same data, new run

    expected = [
        f'datasetjob_runs_started_total{{namespace="{s3_ns}"}} 2.0',
        f'datasetjob_runs_finished_total{{namespace="{s3_ns}",phase="Succeeded",reason="Published"}} 2.0',
    ]

    def counted():  # the counters move right after the status write that we saw
        metrics = urllib.request.urlopen(operator.metrics_url, timeout=5).read().decode()
        return all(line in metrics for line in expected)

    cluster.wait_for(counted, timeout=30, what=f"metrics {expected}", namespace=s3_ns)


def test_items_from_a_configmap(cluster, operator, s3_ns, s3, bucket):
    lines = [json.dumps({"symbol": s, "date": d}) for s in ("AAA", "ABH", "ACO") for d in ("2023-01-31", "2023-02-28")]
    cluster.core.create_namespaced_config_map(
        s3_ns, {"metadata": {"name": "universe"}, "data": {"items.jsonl": "\n".join(lines) + "\n"}}
    )
    doc = sample(bucket, s3, shards=2)
    doc["spec"]["items"] = {
        "fromConfigMap": {"name": "universe", "key": "items.jsonl"},
        "idTemplate": "{symbol}:{date}",
    }
    apply(cluster, s3_ns, doc)
    st = wait_phase(cluster, operator, s3_ns, "smf", "Succeeded")["status"]
    assert st["items"]["total"] == 6 and st["items"]["done"] == 6 and st["output"]["rows"] == 6


def test_suspend_holds_the_pods_until_resumed(cluster, operator, s3_ns, s3, bucket):
    doc = sample(bucket, s3, suspend=True)
    apply(cluster, s3_ns, doc)
    wait_phase(cluster, operator, s3_ns, "smf", "Suspended")
    time.sleep(2)
    assert cluster.core.list_namespaced_pod(s3_ns, label_selector="datagen.dev/datasetjob=smf").items == []
    job = cluster.batch.list_namespaced_job(s3_ns).items[0]
    assert job.spec.suspend is True
    doc["spec"]["suspend"] = False
    apply(cluster, s3_ns, doc)
    st = wait_phase(cluster, operator, s3_ns, "smf", "Succeeded")["status"]
    assert st["output"]["rows"] == 36 and len(jobs(cluster, s3_ns)) == 2  # same run: suspend is not data
