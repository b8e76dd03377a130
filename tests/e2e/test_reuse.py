"""Incremental regeneration in the cluster: GitOps applies the sample with one more month-end,
and the new run generates only the new month's items, reusing the rest from S3.

Generator calls are counted by the sample generator itself, in a list in the chart's Redis
(SMF_ITEM_LOG_KEY; pods share no files)."""

from __future__ import annotations

import copy
import json
import re
from collections import Counter

from tests.e2e.test_operator import apply, get, s3_sha, sample, shared_state, wait_phase

NEW_DATE = "2026-01-31"
# The whole sample (3,600 items, then 3,700). Fewer symbols make it quicker; the assertions
# scale with them ("100 generated" is the number of symbols).
SYMBOLS, DATES, SHARDS = 100, 36, 10


def ids(doc: dict) -> list[str]:
    product = doc["spec"]["items"]["product"]
    return [f"{s}:{d}" for s in product["symbol"] for d in product["date"]]


def run_pods(cluster, namespace: str, run_id: str, role: str) -> list[str]:
    selector = f"datagen.dev/run-id={run_id},datagen.dev/role={role}"
    return [p.metadata.name for p in cluster.core.list_namespaced_pod(namespace, label_selector=selector).items]


def generated(redis, key: str) -> Counter:
    return Counter(x.decode() for x in redis.client().lrange(key, 0, -1))


def test_appended_month_generates_only_the_new_items(cluster, operator, s3_ns, s3, bucket, redis):
    calls = f"items-{s3_ns}"
    doc = shared_state(redis, sample(bucket, s3, symbols=SYMBOLS, dates=DATES, shards=SHARDS), SMF_ITEM_LOG_KEY=calls)
    apply(cluster, s3_ns, doc)
    first = wait_phase(cluster, operator, s3_ns, "smf", "Succeeded", timeout=600)["status"]
    total = SYMBOLS * DATES
    assert (first["items"]["generated"], first["items"]["reused"]) == (total, 0)
    assert generated(redis, calls) == Counter(ids(doc))
    redis.client().delete(calls)

    grown = copy.deepcopy(doc)
    grown["spec"]["items"]["product"]["date"].append(NEW_DATE)
    apply(cluster, s3_ns, grown)  # what a GitOps sync of the appended spec does
    st = wait_phase(cluster, operator, s3_ns, "smf", "Succeeded", timeout=600, not_run=first["runId"])["status"]
    assert st["items"] == {
        "total": total + SYMBOLS,
        "done": total + SYMBOLS,
        "failed": 0,
        "generated": SYMBOLS,
        "reused": total,
        "progress": f"{total + SYMBOLS}/{total + SYMBOLS}",
    }
    assert generated(redis, calls) == Counter(i for i in ids(grown) if i.endswith(NEW_DATE))

    manifest = json.loads(
        s3.client().get_object(Bucket=bucket, Key=f"smf/runs/{st['runId']}/manifest.json")["Body"].read()
    )
    assert {run: len(items) for run, items in manifest["lineage"]["reusedFrom"].items()} == {first["runId"]: total}

    wide = cluster.kubectl("get", "dsj", "smf", "-n", s3_ns, "-o", "wide").stdout.splitlines()
    # Columns are two or more spaces apart; a value (the shards' progress) may hold one.
    row = dict(zip(re.split(r"\s{2,}", wide[0]), re.split(r"\s{2,}", wide[1]), strict=False))
    assert (row["GENERATED"], row["REUSED"]) == (str(SYMBOLS), str(total)), wide

    # Planned: only the work packets of the 100 new items ran, a pod each (not one per shard).
    plan = st["plan"]
    assert (plan["toGenerate"], plan["reused"], plan["shardsWithWork"]) == (SYMBOLS, total, SHARDS)
    gen = cluster.batch.read_namespaced_job(st["jobs"]["generate"], s3_ns)
    assert gen.spec.completions == plan["packets"] < SHARDS
    assert len(run_pods(cluster, s3_ns, st["runId"], "generate")) == plan["packets"]
    assert row["SHARDS"].startswith(f"{plan['packets']}/{plan['packets']}"), wide

    # Nothing new to generate (only the combine's bar changed): no generate Job, the same bytes.
    same_items = copy.deepcopy(grown)
    same_items["spec"]["combine"]["minItemSuccessRatio"] = 0.99
    apply(cluster, s3_ns, same_items)
    again = wait_phase(cluster, operator, s3_ns, "smf", "Succeeded", timeout=300, not_run=st["runId"])["status"]
    assert again["plan"]["packets"] == 0 and "generate" not in again["jobs"]
    assert run_pods(cluster, s3_ns, again["runId"], "generate") == []
    assert (again["items"]["generated"], again["items"]["reused"]) == (0, total + SYMBOLS)
    assert again["output"]["sha256"] == st["output"]["sha256"]

    # The same bytes as a full regeneration of the grown spec (reuse off, another prefix).
    full = copy.deepcopy(grown)
    full["metadata"]["name"] = "smf-full"
    full["spec"]["output"]["uri"] = f"s3://{bucket}/smf-full"
    full["spec"]["reuse"] = {"enabled": False}
    apply(cluster, s3_ns, full)
    whole = wait_phase(cluster, operator, s3_ns, "smf-full", "Succeeded", timeout=600)["status"]
    assert (whole["items"]["generated"], whole["items"]["reused"]) == (total + SYMBOLS, 0)
    assert whole["output"]["sha256"] == st["output"]["sha256"] == s3_sha(s3, st["output"]["uri"])


def test_bumping_the_generator_version_regenerates_every_item(cluster, operator, s3_ns, s3, bucket, redis):
    calls = f"items-{s3_ns}"
    doc = shared_state(redis, sample(bucket, s3), SMF_ITEM_LOG_KEY=calls)
    apply(cluster, s3_ns, doc)
    first = wait_phase(cluster, operator, s3_ns, "smf", "Succeeded")["status"]
    redis.client().delete(calls)

    doc["spec"]["generator"]["version"] = "2"
    apply(cluster, s3_ns, doc)
    st = wait_phase(cluster, operator, s3_ns, "smf", "Succeeded", not_run=first["runId"])["status"]
    assert (st["items"]["generated"], st["items"]["reused"]) == (36, 0)
    assert generated(redis, calls) == Counter(ids(doc))
    assert st["output"]["sha256"] == first["output"]["sha256"]
    assert get(cluster, s3_ns, "smf")["spec"]["generator"]["version"] == "2"
