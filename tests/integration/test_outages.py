"""A run outlives its shared services going away mid-run, against the real servers.

The S3 server is killed for OUTAGE_SECONDS and started again on its port with its data: the
workers, `dsj run`, the plan and the combine wait it out (every request retried with backoff
within DSJ_S3_RETRY_SECONDS), so no shard is lost, and the dataset is byte-identical to an
undisturbed run's with nothing half written left behind. Redis is killed and comes back empty,
as a new pod would: the cache degrades to misses, the rate limit to each worker's share, and
the spend ledger waits, so the budget still holds. Past its retry window a run fails instead
of hanging; an S3 answer that says "no" fails at once. No test asserts how long anything took.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from datasetjob.cache.embedded import EmbeddedCache
from datasetjob.errors import RedisUnavailable, StorageError
from datasetjob.local.lease import Holder, S3Lease
from datasetjob.redis_link import forget_links
from datasetjob.store.backends import S3Store
from datasetjob.worker.spend import RedisLedger
from tests.integration.runs import datasetjob, dsj, sample_doc, sha256, write_doc
from tests.integration.test_ratelimit import max_excess

# How long each service stays down. The retry windows stay at their 120 s defaults unless a
# test shortens one to see what happens past it.
OUTAGE_SECONDS = float(os.environ.get("DSJ_TEST_OUTAGE_SECONDS", "8"))
S3_DOWN = "is not answering"
S3_BACK = "answers again"

SYMBOLS, DATES, SHARDS = 48, 12, 4
TOTAL_ITEMS = SYMBOLS * DATES


@pytest.fixture(autouse=True)
def fresh_links():
    forget_links()
    yield
    forget_links()


def outage_doc(**spec) -> dict:
    """The sample, scaled down; two items at a time per worker, so a run lasts a few seconds
    at SMF_LATENCY_MS=40 and an outage falls in its middle."""
    doc = sample_doc(symbols=SYMBOLS, dates=DATES, shards=SHARDS, **spec)
    doc["spec"]["generator"]["concurrency"] = 2
    return doc


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> str:
    """The sha256 of the dataset an undisturbed run publishes (to disk, the embedded cache)."""
    tmp = tmp_path_factory.mktemp("reference")
    spec = write_doc(outage_doc(), tmp / "job.yaml")
    env = {"DSJ_EMBEDDED_CACHE_DIR": str(tmp / "cache")}
    output = f"file://{tmp / 'out'}"
    dsj("run", str(spec), "--output", output, "--workdir", str(tmp / "w"), cwd=tmp, env=env, check=True)
    latest = json.loads((tmp / "out" / "latest.json").read_text())
    return sha256(Path(latest["dataset"]["uri"].removeprefix("file://")))


# --------------------------------------------------------------------------- running dsj


def start_dsj(tmp: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    full_env = {**os.environ, "SMF_LATENCY_MS": "40", "SMF_ITEM_LOG": str(tmp / "items.log"), **env}
    return subprocess.Popen(
        [sys.executable, "-m", "datasetjob", *args],
        cwd=tmp,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def generated(tmp: Path) -> list[str]:
    """The items the generator was called for, once per call (SMF_ITEM_LOG)."""
    log = tmp / "items.log"
    return log.read_text().split() if log.exists() else []


def wait_until(predicate: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 240
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"dsj ended (exit {proc.returncode}) before {what}\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def a_quarter_generated(tmp: Path) -> Callable[[], bool]:
    return lambda: len(generated(tmp)) >= TOTAL_ITEMS // 4


def finish(proc: subprocess.Popen[str], expect: int = 0) -> tuple[str, str]:
    """(stdout, stderr) of `proc`, which must exit with `expect`."""
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == expect, f"exit {proc.returncode}, expected {expect}\n{out}\n{err}"
    return out, err


def shard_logs(workdir: Path) -> dict[str, str]:
    return {p.stem: p.read_text() for p in workdir.glob("logs/*/*.log")}


def each_item_once(csv_text: str) -> None:
    keys = Counter(tuple(line.split(",")[:2]) for line in csv_text.splitlines()[1:])
    assert len(keys) == TOTAL_ITEMS and max(keys.values()) == 1


# --------------------------------------------------------------------------- S3


def cache_made_beforehand(directory: Path) -> str:
    """An embedded cache directory with its SQLite file in place: workers that create a new one
    together can fail one of them ("database is locked"; dsj run retries it), which would pass
    for a shard lost to the outage here."""
    EmbeddedCache(directory).close()
    return str(directory)


def s3_doc(s3_server, bucket: str, **spec) -> dict:
    doc = outage_doc(**spec)
    doc["spec"]["output"] = {"format": "csv", "uri": f"s3://{bucket}/ds", "endpointUrl": s3_server.endpoint_url}
    return doc


def s3_keys(s3, bucket: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


# What a published run leaves: nothing temporary (checkpoints, the lease), nothing else.
PUBLISHED_KEY = re.compile(
    r"ds/(latest\.json"
    r"|runs/\w+/(spec\.json|manifest\.json|combined-dataset\.csv"
    r"|shards/shard-\d{5}\.(csv|json)|failures/shard-\d{5}\.jsonl)"
    r"|items/\w+/(fingerprint\.json|segments/\w+/shard-\d{5}-[\w.-]+\.jsonl))"
)


def check_published_on_s3(s3, bucket: str, reference_sha: str) -> dict:
    """The dataset latest.json names, whole and as an undisturbed run made it; every shard's
    object matches its manifest; no temporary object or pending upload is left. The manifest."""
    latest = json.loads(s3.get_object(Bucket=bucket, Key="ds/latest.json")["Body"].read())
    body = s3.get_object(Bucket=bucket, Key=latest["dataset"]["uri"].removeprefix(f"s3://{bucket}/"))["Body"].read()
    assert hashlib.sha256(body).hexdigest() == reference_sha == latest["dataset"]["sha256"]
    each_item_once(body.decode())
    keys = s3_keys(s3, bucket)
    assert [k for k in keys if not PUBLISHED_KEY.fullmatch(k)] == []
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    shards = f"ds/runs/{latest['runId']}/shards"
    for index in range(SHARDS):
        shard = json.loads(s3.get_object(Bucket=bucket, Key=f"{shards}/shard-{index:05d}.json")["Body"].read())
        data = s3.get_object(Bucket=bucket, Key=f"{shards}/shard-{index:05d}.csv")["Body"].read()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"] and len(data) == shard["bytes"]
    manifest: dict = json.loads(
        s3.get_object(Bucket=bucket, Key=f"ds/runs/{latest['runId']}/manifest.json")["Body"].read()
    )
    return manifest


def test_a_run_on_s3_waits_out_an_outage_of_the_server(tmp_path, s3_server, s3_bucket, reference):
    spec = write_doc(s3_doc(s3_server, s3_bucket), tmp_path / "job.yaml")
    env = dict(s3_server.env(), DSJ_EMBEDDED_CACHE_DIR=cache_made_beforehand(tmp_path / "cache"))
    proc = start_dsj(tmp_path, "run", str(spec), "--workdir", str(tmp_path / "w"), "--quiet", env=env)
    wait_until(a_quarter_generated(tmp_path), proc, "a quarter of the items")
    with s3_server.stopped():
        time.sleep(OUTAGE_SECONDS)
        assert proc.poll() is None, "dsj run ended while S3 was down"
    finish(proc)

    manifest = check_published_on_s3(s3_server.client(), s3_bucket, reference)
    assert manifest["items"]["done"] == TOTAL_ITEMS and manifest["items"]["failed"] == 0
    logs = shard_logs(tmp_path / "w")
    assert len(logs) == SHARDS
    for name, text in logs.items():
        assert "--- attempt 2" not in text, f"{name} was run again:\n{text}"  # the wait, not a retry, did it
        assert text.count(S3_DOWN) == text.count(S3_BACK) <= 1, f"{name}:\n{text}"  # a line each, not per retry
    assert any(S3_DOWN in text for text in logs.values()), "no worker met the outage"


def test_past_its_retry_window_a_run_fails_and_publishes_nothing(tmp_path, s3_server, s3_bucket):
    doc = s3_doc(s3_server, s3_bucket, retries={"perShard": 0, "maxFailedShards": 0})
    spec = write_doc(doc, tmp_path / "job.yaml")
    env = dict(s3_server.env(), DSJ_EMBEDDED_CACHE_DIR=str(tmp_path / "cache"), DSJ_S3_RETRY_SECONDS="1")
    proc = start_dsj(tmp_path, "run", str(spec), "--workdir", str(tmp_path / "w"), "--quiet", env=env)
    wait_until(a_quarter_generated(tmp_path), proc, "a quarter of the items")
    with s3_server.stopped():
        _, err = finish(proc, expect=1)  # S3 is down until dsj run has given up
    assert "Could not connect to the endpoint URL" in err
    logs = "".join(shard_logs(tmp_path / "w").values())
    assert "giving up" in logs and "StorageError" in logs
    keys = s3_keys(s3_server.client(), s3_bucket)
    assert "ds/latest.json" not in keys and not any(k.endswith("combined-dataset.csv") for k in keys)


def test_the_plan_and_the_combine_wait_out_an_outage_of_the_server(tmp_path, s3_server, s3_bucket):
    """`dsj plan` and `dsj combine` (the plan and combine pods) each started while S3 is down."""
    doc = s3_doc(s3_server, s3_bucket)
    first = write_doc(doc, tmp_path / "first.yaml")
    env = dict(s3_server.env(), DSJ_EMBEDDED_CACHE_DIR=str(tmp_path / "cache"))
    dsj("run", str(first), "--workdir", str(tmp_path / "w"), cwd=tmp_path, env=env, check=True)
    s3 = s3_server.client()
    latest = json.loads(s3.get_object(Bucket=s3_bucket, Key="ds/latest.json")["Body"].read())
    grown = json.loads(json.dumps(doc))
    grown["spec"]["items"]["product"]["date"].append("2026-01-31")
    second = write_doc(grown, tmp_path / "second.yaml")

    with s3_server.stopped():
        combine = start_dsj(tmp_path, "combine", "--spec", str(first), "--run-id", latest["runId"], env=env)
        plan = start_dsj(tmp_path, "plan", "--spec", str(second), env=env)
        time.sleep(OUTAGE_SECONDS)
        assert combine.poll() is None and plan.poll() is None, "a command ended while S3 was down"
    (_, combine_err), (planned, plan_err) = finish(combine), finish(plan)

    assert S3_DOWN in combine_err and S3_BACK in combine_err
    assert S3_DOWN in plan_err and S3_BACK in plan_err
    again = json.loads(s3.get_object(Bucket=s3_bucket, Key="ds/latest.json")["Body"].read())
    assert again["dataset"]["sha256"] == latest["dataset"]["sha256"] and again["runId"] == latest["runId"]
    summary = json.loads(planned)
    assert summary["toGenerate"] == SYMBOLS and summary["reused"] == TOTAL_ITEMS  # the new month-end's items
    assert f"ds/{summary['planKey']}" in s3_keys(s3, s3_bucket)


def count_attempts(store: S3Store) -> list[str]:
    """Every HTTP request the store's client sends (each retry too), by its method."""
    sent: list[str] = []
    store.client.meta.events.register("before-send.s3", lambda request, **_: sent.append(request.method))
    return sent


def test_a_request_waits_out_a_stopped_server_with_one_line_each_way(s3_server, s3_bucket, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="datasetjob.store")
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    store = S3Store(s3_bucket, "direct", endpoint_url=s3_server.endpoint_url, region=s3_server.region)
    attempts = count_attempts(store)
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            store.put_bytes("key.json", b'{"whole": true}')
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            outcome.append(exc)

    with s3_server.stopped():  # the thread writes; the server comes back from the main thread
        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(OUTAGE_SECONDS)
    writer.join(timeout=300)
    assert outcome == [None]
    assert store.get_bytes("key.json") == b'{"whole": true}'
    assert len(attempts) > 2  # it was sent while the server was down, more than once
    said = [r.getMessage() for r in caplog.records]
    assert sum(S3_DOWN in m for m in said) == 1 and sum(S3_BACK in m for m in said) == 1
    assert not any(s3_server.secret_key in m or s3_server.access_key in m for m in said)


@pytest.mark.parametrize("what", ["a missing bucket", "a missing key", "a wrong secret key"])
def test_an_s3_answer_that_says_no_fails_at_once(s3_server, s3_bucket, monkeypatch, caplog, what):
    """With the default window (120 s): a retry would show as a second request."""
    monkeypatch.delenv("DSJ_S3_RETRY_SECONDS", raising=False)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    if what == "a wrong secret key":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it keeps the credentials it found first
    bucket = f"{s3_bucket}-missing" if what == "a missing bucket" else s3_bucket
    store = S3Store(bucket, "out", endpoint_url=s3_server.endpoint_url, region=s3_server.region)
    attempts = count_attempts(store)
    expected = {"a missing bucket": "NoSuchBucket", "a missing key": "NoSuchKey", "a wrong secret key": "403|Signature"}
    with pytest.raises(StorageError, match=expected[what]):
        if what == "a missing key":
            store.get_bytes("nothing-here.json")
        else:
            store.put_bytes("runs/r/spec.json", b"{}")
    assert len(attempts) == 1
    assert not [r for r in caplog.records if S3_DOWN in r.getMessage()]


def test_a_lease_renewal_sent_again_after_it_landed_keeps_the_lease(s3_server, s3_bucket, monkeypatch):
    """A conditional write whose answer is lost is sent again, and then fails its own condition
    (the first one landed): the lease must see its own bytes there, not another run."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    store = S3Store(s3_bucket, "out", endpoint_url=s3_server.endpoint_url, region=s3_server.region)
    lease = S3Lease(store, "runs/r/lease.json", Holder.this_process())
    lease.acquire(same_host_is_dead=True)
    dropped: list[int] = []

    def lose_the_first_answer(response=None, **_) -> float | None:
        if response is not None and not dropped:
            dropped.append(response[0].status_code)
            return 0.0  # sent again at once, as after a connection lost before the answer came
        return None

    store.client.meta.events.register_first("needs-retry.s3.PutObject", lose_the_first_answer)
    lease.renew()
    assert dropped == [200]
    current = store.read_versioned("runs/r/lease.json")
    assert current is not None and lease.etag == current[1] and b"renewedAt" in current[0]


# --------------------------------------------------------------------------- Redis


def budget_doc(items: int, max_tokens: int) -> dict:
    return datasetjob(
        "spendy",
        items={"range": {"stop": items}},
        shards=SHARDS,
        parallelism=SHARDS,
        generator={"function": "spendy:generate", "concurrency": 2},
        output={"format": "jsonl"},
        budget={"maxTokens": max_tokens},
    )


# 100 tokens an item, ~20 ms each; every call is appended to $CALLS.
SPENDY = """
import os, time

def generate(item, ctx):
    time.sleep(0.02)
    with open(os.environ["CALLS"], "a") as f:
        f.write(f"{item}\\n")
    ctx.usage(tokens=100)
    return {"n": item}
"""


def test_a_run_with_redis_waits_out_an_outage_and_an_empty_new_redis(tmp_path, redis_server, redis_url, reference):
    """Cache, rate limit and spend ledger in one Redis, killed mid-run and started empty."""
    rate, burst = 60.0, 5
    doc = outage_doc(rateLimit={"requestsPerSecond": rate, "burst": burst}, budget={"maxTokens": 10**9})
    spec = write_doc(doc, tmp_path / "job.yaml")
    calls = tmp_path / "calls.log"
    env = {
        "DSJ_EMBEDDED_CACHE_DIR": str(tmp_path / "unused-cache"),
        "SMF_TOKENS_PER_ITEM": "100",
        "SMF_CALL_LOG": str(calls),
        "DSJ_REDIS_RECONNECT_SECONDS": "1",  # the cache and the limiter go back to the new Redis soon
    }
    args = ("run", str(spec), "--output", f"file://{tmp_path / 'out'}", "--workdir", str(tmp_path / "w"))
    proc = start_dsj(tmp_path, *args, "--redis-url", redis_url, "--quiet", env=env)
    wait_until(a_quarter_generated(tmp_path), proc, "a quarter of the items")
    with redis_server.stopped():
        time.sleep(OUTAGE_SECONDS)
        assert proc.poll() is None, "dsj run ended while Redis was down"
    finish(proc)

    latest = json.loads((tmp_path / "out" / "latest.json").read_text())
    dataset = Path(latest["dataset"]["uri"].removeprefix("file://"))
    assert sha256(dataset) == reference
    each_item_once(dataset.read_text())
    logs = shard_logs(tmp_path / "w")
    assert len(logs) == SHARDS
    for name, text in logs.items():
        assert "--- attempt 2" not in text and "Traceback" not in text, f"{name}:\n{text}"
    said = "".join(logs.values())
    assert "waiting for shared Redis" in said and "is reachable again" in said
    assert "was missing in Redis" in said  # the ledger found the new Redis empty, and restored it
    # Spend: the new Redis' ledger never counts more than the generator calls made (it may miss
    # the items in flight when the old one went).
    spent = float(redis_server.client().hget(ledger_key(doc, latest["runId"]), "tokens"))
    assert spent <= 100 * len(generated(tmp_path))
    # The rate limit held throughout: in Redis, in each worker's share while it was away, in
    # the new Redis' fresh bucket after: at most a burst from each, and one call per thread
    # between its grant and its log line.
    times = [float(line) for line in calls.read_text().split()]
    assert max_excess(times, rate) <= 3 * burst + SHARDS * 2


def ledger_key(doc: dict, run_id: str) -> str:
    return f"dsj:spend:{doc['metadata']['name']}:{run_id}"


def test_the_budget_holds_through_a_redis_outage(tmp_path, redis_server, redis_url):
    """A budget of 300 items' tokens over 400 items: the run stops at it though Redis went away
    and came back empty (counted apart, each worker would have spent up to the whole budget)."""
    (tmp_path / "spendy.py").write_text(SPENDY)
    calls = tmp_path / "calls.log"
    spec = write_doc(budget_doc(items=400, max_tokens=30_000), tmp_path / "job.yaml")
    env = {"CALLS": str(calls), "DSJ_EMBEDDED_CACHE_DIR": str(tmp_path / "cache")}
    proc = start_dsj(
        tmp_path, "run", str(spec), "--redis-url", redis_url, "--workdir", str(tmp_path / "w"), "--quiet", env=env
    )
    wait_until(lambda: calls.exists() and len(calls.read_text().split()) >= 100, proc, "100 items")
    with redis_server.stopped():
        time.sleep(OUTAGE_SECONDS)
    _, err = finish(proc, expect=77)
    assert "spec.budget.maxTokens 30000 reached" in " ".join(err.split())
    made = Counter(calls.read_text().split())
    # 300 within the budget, then the items in flight at the stop (4 workers x 2), and what the
    # restored ledger may miss: the items the other workers had in flight when Redis went.
    assert 300 <= sum(made.values()) <= 300 + SHARDS * 2 + (SHARDS - 1) * 2 and max(made.values()) == 1


def test_past_its_retry_window_the_spend_ledger_stops_the_worker_checkpointed(tmp_path, redis_server, redis_url):
    (tmp_path / "spendy.py").write_text(SPENDY)
    calls = tmp_path / "calls.log"
    doc = budget_doc(items=400, max_tokens=10**9)
    doc["spec"]["retries"] = {"perShard": 0, "maxFailedShards": 0}
    spec = write_doc(doc, tmp_path / "job.yaml")
    env = {"CALLS": str(calls), "DSJ_EMBEDDED_CACHE_DIR": str(tmp_path / "cache"), "DSJ_REDIS_RETRY_SECONDS": "1"}
    args = ("run", str(spec), "--redis-url", redis_url, "--workdir", str(tmp_path / "w"))
    proc = start_dsj(tmp_path, *args, "--quiet", env=env)
    wait_until(lambda: calls.exists() and len(calls.read_text().split()) >= 100, proc, "100 items")
    with redis_server.stopped():
        finish(proc, expect=1)  # Redis is down until dsj run has given up
    logs = shard_logs(tmp_path / "w")
    for name, text in logs.items():
        if "committed:" in text:
            continue  # done before Redis went
        assert "did not answer for" in text and "no new item starts" in text, f"{name}:\n{text}"
        assert "checkpoint saved" in text and "Traceback" not in text, f"{name}:\n{text}"

    # Redis is back (empty): --resume makes only what no checkpoint holds
    before = Counter(calls.read_text().split())
    resumed = subprocess.run(
        [sys.executable, "-m", "datasetjob", *args, "--resume", "--quiet"],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    made = Counter(calls.read_text().split())
    assert set(made) == {str(i) for i in range(400)}
    again = sum(n - 1 for n in made.values())
    assert again <= SHARDS * 2, f"{again} items made twice (before the resume: {sum(before.values())})"


def test_a_ledger_found_empty_is_raised_to_what_its_workers_saw(redis_server_factory):
    """Two workers' ledgers; the Redis under them restarted empty: the totals come back to at
    least what each worker had seen plus its own usage since, never above what was spent."""
    server = redis_server_factory()
    first, second = RedisLedger(server.url, "ns", "run"), RedisLedger(server.url, "ns", "run")
    spent = 0.0
    for ledger, tokens in ((first, 100.0), (second, 50.0), (first, 10.0)):
        spent += tokens
        assert ledger.add({"tokens": tokens})["tokens"] == spent
    with server.stopped():
        pass  # gone and back, empty
    spent += 5.0
    after = second.add({"tokens": 5.0})["tokens"]
    assert after == pytest.approx(150.0 + 5.0) and after <= spent  # what `second` last saw, and its usage since
    spent += 1.0
    after = first.add({"tokens": 1.0})["tokens"]
    assert after == pytest.approx(160.0 + 1.0) and after <= spent
    spent += 2.0
    assert second.add({"tokens": 2.0})["tokens"] == pytest.approx(163.0)  # plain adds again


def test_the_spend_ledger_waits_for_redis_and_refuses_a_wrong_password_at_once(redis_server_factory, monkeypatch):
    monkeypatch.setenv("DSJ_REDIS_RETRY_SECONDS", "0.5")
    server = redis_server_factory()
    ledger = RedisLedger(server.url, "ns", "run")
    ledger.add({"tokens": 1.0})
    server.kill()
    with pytest.raises(RedisUnavailable, match=r"did not answer for 0.5s \(ConnectionError"):
        ledger.add({"tokens": 2.0})
    server.start()  # empty: the ledger restores what it had seen, and sends what it could not
    assert ledger.add({"tokens": 4.0})["tokens"] == pytest.approx(1.0 + 2.0 + 4.0)

    monkeypatch.delenv("DSJ_REDIS_RETRY_SECONDS")  # 120 s: only a retry would wait
    guarded = redis_server_factory(password="s3cret")
    wrong = guarded.url.replace(":s3cret@", ":wrong@")
    with pytest.raises(RedisUnavailable, match="refused the request") as refused:
        RedisLedger(wrong, "ns", "run").add({"tokens": 1.0})
    assert "wrong" not in str(refused.value) and "s3cret" not in str(refused.value)
