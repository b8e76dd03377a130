"""The same run against a real S3-compatible server over HTTP."""

import hashlib
import json

import pytest

from datasetjob.errors import StorageError
from datasetjob.store.backends import S3Store
from tests.integration.runs import dsj, published, sample_doc, sha256, write_doc


def test_run_to_s3_publishes_the_same_dataset_as_to_disk(tmp_path, s3_server, s3_bucket):
    doc = sample_doc(symbols=6, dates=6, shards=3)
    doc["spec"]["output"] = {"format": "csv", "endpointUrl": s3_server.endpoint_url}
    spec = write_doc(doc, tmp_path / "job.yaml")
    env = dict(s3_server.env(), DSJ_EMBEDDED_CACHE_DIR=str(tmp_path / "cache"))

    local = dsj(
        "run", str(spec), "--output", f"file://{tmp_path}/out", "--workdir", str(tmp_path / "w1"), cwd=tmp_path, env=env
    )
    assert local.returncode == 0, local.stderr
    remote = dsj(
        "run",
        str(spec),
        "--output",
        f"s3://{s3_bucket}/datasets/smf",
        "--workdir",
        str(tmp_path / "w2"),
        cwd=tmp_path,
        env=env,
    )
    assert remote.returncode == 0, remote.stderr

    s3 = s3_server.client()
    latest = json.loads(s3.get_object(Bucket=s3_bucket, Key="datasets/smf/latest.json")["Body"].read())
    key = latest["dataset"]["uri"].removeprefix(f"s3://{s3_bucket}/")
    body = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    dataset, _ = published(tmp_path / "out")
    assert hashlib.sha256(body).hexdigest() == sha256(dataset) == latest["dataset"]["sha256"]

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="datasets/smf/")["Contents"]}
    run = latest["runId"]
    for i in range(3):
        assert f"datasets/smf/runs/{run}/shards/shard-0000{i}.csv" in keys
        assert f"datasets/smf/runs/{run}/shards/shard-0000{i}.json" in keys
        assert f"datasets/smf/runs/{run}/failures/shard-0000{i}.jsonl" in keys
    assert f"datasets/smf/runs/{run}/manifest.json" in keys
    assert not any("/checkpoints/" in k for k in keys)  # discarded once shards commit


def test_items_from_an_s3_uri(tmp_path, s3_server, s3_bucket):
    s3 = s3_server.client()
    s3.put_object(
        Bucket=s3_bucket,
        Key="universe.jsonl",
        Body=b'{"symbol": "AAA", "date": "2023-01-31"}\n{"symbol": "ABH", "date": "2023-02-28"}\n',
    )
    doc = sample_doc(shards=2)
    doc["spec"]["items"] = {"fromUri": f"s3://{s3_bucket}/universe.jsonl", "idTemplate": "{symbol}:{date}"}
    doc["spec"]["output"] = {"endpointUrl": s3_server.endpoint_url}
    proc = dsj(
        "run",
        str(write_doc(doc, tmp_path / "job.yaml")),
        "--output",
        f"file://{tmp_path}/out",
        "--workdir",
        str(tmp_path / "w"),
        cwd=tmp_path,
        env=dict(s3_server.env(), DSJ_EMBEDDED_CACHE_DIR=str(tmp_path)),
    )
    assert proc.returncode == 0, proc.stderr
    dataset, manifest = published(tmp_path / "out")
    assert manifest["items"]["done"] == 2
    assert [line.split(",")[0] for line in dataset.read_text().splitlines()] == ["symbol", "AAA", "ABH"]


def test_a_partly_failed_delete_on_s3_is_an_error_naming_the_key(s3_server, s3_bucket, monkeypatch):
    """DeleteObjects answers 200 and lists the keys it could not delete: those stay, and a stale
    shard manifest among them would pass for a committed shard. The store must say so."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    store = S3Store(s3_bucket, "out", endpoint_url=s3_server.endpoint_url, region=s3_server.region)
    for key in ("runs/r/shards/shard-00000.json", "runs/r/shards/shard-00001.json", "runs/r/spec.json"):
        store.put_bytes(key, b"{}")
    stuck = "out/runs/r/shards/shard-00001.json"

    # The server really keeps one object (it is left out of the request) and the answer says
    # why, as a server does for a key it may not delete.
    def keep_one(params, **_):
        params["Delete"]["Objects"] = [o for o in params["Delete"]["Objects"] if o["Key"] != stuck]

    def report_it(parsed, **_):
        parsed.setdefault("Errors", []).append({"Key": stuck, "Code": "AccessDenied", "Message": "Access Denied"})

    store.client.meta.events.register("provide-client-params.s3.DeleteObjects", keep_one)
    store.client.meta.events.register("after-call.s3.DeleteObjects", report_it)
    with pytest.raises(StorageError, match=r"1 object\(s\) could not be deleted: .*shard-00001\.json \(AccessDenied"):
        store.delete_prefix("runs/r/")
    assert store.list("runs/r/") == ["runs/r/shards/shard-00001.json"]
