"""Incremental regeneration: a grown universe generates only its new items, and publishes the
same bytes as a full regeneration. Generator calls are counted by the sample generator itself
(SMF_ITEM_LOG: one line per example it generates), on disk and on a real S3 server."""

from __future__ import annotations

import copy
import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.runs import dsj, published, sample_doc, sha256, write_doc

NEW_DATE = "2026-01-31"


def item_ids(doc: dict) -> list[str]:
    product = doc["spec"]["items"]["product"]
    return [f"{s}:{d}" for s in product["symbol"] for d in product["date"]]


def appended(doc: dict, date: str = NEW_DATE) -> dict:
    out = copy.deepcopy(doc)
    out["spec"]["items"]["product"]["date"].append(date)
    return out


def with_spec(doc: dict, **over) -> dict:
    out = copy.deepcopy(doc)
    out["spec"].update(over)
    return out


class Runs:
    """`dsj run` of several specs, each run with its own generator-call log."""

    def __init__(self, tmp_path: Path, env: dict | None = None):
        self.tmp = tmp_path
        self.env = env or {}
        self.count = 0

    def run(self, doc: dict, output: str, env: dict | None = None) -> Counter:
        """Runs `doc` to `output`; returns how often each item was generated."""
        self.count += 1
        n = self.count
        log = self.tmp / f"items-{n}.log"
        proc = dsj(
            "run",
            str(write_doc(doc, self.tmp / f"job-{n}.yaml")),
            "--output",
            output,
            "--workdir",
            str(self.tmp / f"work-{n}"),
            cwd=self.tmp,
            env={
                "DSJ_EMBEDDED_CACHE_DIR": str(self.tmp / "cache"),
                "SMF_ITEM_LOG": str(log),
                **self.env,
                **(env or {}),
            },
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        self.stderr = proc.stderr
        return Counter(log.read_text().split()) if log.exists() else Counter()


def test_appended_date_on_s3_generates_only_the_new_items(tmp_path, s3_server, s3_bucket):
    """The sample (100 symbols x 36 month-ends), then one more month-end."""
    doc = sample_doc(symbols=100, dates=36, shards=10)
    doc["spec"]["output"] = {"format": "csv", "endpointUrl": s3_server.endpoint_url}
    runs = Runs(tmp_path, s3_server.env())
    output = f"s3://{s3_bucket}/smf"
    s3 = s3_server.client()

    def latest(prefix: str) -> tuple[dict, str]:
        pointer = json.loads(s3.get_object(Bucket=s3_bucket, Key=f"{prefix}/latest.json")["Body"].read())
        manifest = json.loads(
            s3.get_object(Bucket=s3_bucket, Key=f"{prefix}/runs/{pointer['runId']}/manifest.json")["Body"].read()
        )
        body = s3.get_object(Bucket=s3_bucket, Key=pointer["dataset"]["uri"].removeprefix(f"s3://{s3_bucket}/"))
        return manifest, hashlib.sha256(body["Body"].read()).hexdigest()

    first = runs.run(doc, output)
    assert first == Counter(item_ids(doc))  # the counter sees every generator call: 3,600
    first_manifest, _ = latest("smf")

    grown = appended(doc)
    new_ids = [i for i in item_ids(grown) if i.endswith(NEW_DATE)]
    second = runs.run(grown, output)
    assert second == Counter(new_ids) and len(new_ids) == 100
    manifest, incremental_sha = latest("smf")
    assert manifest["items"] == {
        "total": 3700,
        "done": 3700,
        "failed": 0,
        "missing": 0,
        "generated": 100,
        "reused": 3600,
    }
    reused_from = manifest["lineage"]["reusedFrom"]
    assert list(reused_from) == [first_manifest["runId"]] and len(reused_from[first_manifest["runId"]]) == 3600
    assert "100 generated, 3600 reused from earlier runs" in runs.stderr

    full = runs.run(with_spec(grown, reuse={"enabled": False}), f"s3://{s3_bucket}/full")
    assert full == Counter(item_ids(grown))
    full_manifest, full_sha = latest("full")
    assert incremental_sha == full_sha == manifest["dataset"]["sha256"] == full_manifest["dataset"]["sha256"]
    assert not s3.list_objects_v2(Bucket=s3_bucket, Prefix="full/items/").get("KeyCount")  # off: no records

    bumped = copy.deepcopy(grown)
    bumped["spec"]["generator"]["version"] = "2"
    assert runs.run(bumped, output) == Counter(item_ids(grown))  # a new version regenerates every item
    bumped_manifest, bumped_sha = latest("smf")
    assert bumped_manifest["items"]["reused"] == 0 and bumped_sha == full_sha

    layout = {o["Key"].split("/")[1] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="smf/")["Contents"]}
    assert layout == {"items", "runs", "latest.json"}
    fingerprints = {
        o["Key"].split("/")[2] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="smf/items/")["Contents"]
    }
    assert len(fingerprints) == 2  # the first version's rows and the bumped version's


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_appended_date_on_disk_matches_a_full_regeneration(tmp_path, fmt):
    doc = sample_doc(symbols=100, dates=2, shards=4)
    doc["spec"]["output"] = {"format": fmt}
    runs = Runs(tmp_path)
    runs.run(doc, f"file://{tmp_path}/out")
    grown = appended(doc)
    second = runs.run(grown, f"file://{tmp_path}/out")
    assert second == Counter(i for i in item_ids(grown) if i.endswith(NEW_DATE))
    full = runs.run(with_spec(grown, reuse={"enabled": False}), f"file://{tmp_path}/full")
    assert sum(full.values()) == 300

    incremental, manifest = published(tmp_path / "out")
    regenerated, _ = published(tmp_path / "full")
    assert incremental.suffix == f".{fmt}"
    assert sha256(incremental) == sha256(regenerated)
    assert (manifest["items"]["generated"], manifest["items"]["reused"]) == (100, 200)


@pytest.mark.parametrize("storage", ["file", "s3"])
def test_failed_items_are_generated_again_whatever_the_shard_layout(tmp_path, request, storage):
    doc = sample_doc(symbols=20, dates=3, shards=3)
    if storage == "s3":
        s3_server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        doc["spec"]["output"] = {"format": "csv", "endpointUrl": s3_server.endpoint_url}
        runs, out = Runs(tmp_path, s3_server.env()), f"s3://{bucket}/smf"

        def manifest() -> dict:
            s3 = s3_server.client()
            run = json.loads(s3.get_object(Bucket=bucket, Key="smf/latest.json")["Body"].read())["runId"]
            return json.loads(s3.get_object(Bucket=bucket, Key=f"smf/runs/{run}/manifest.json")["Body"].read())
    else:
        runs, out = Runs(tmp_path), f"file://{tmp_path}/out"

        def manifest() -> dict:
            return published(tmp_path / "out")[1]

    broken = "ACO:2023-02-28"
    first = runs.run(doc, out, env={"SMF_FAIL_ITEMS": broken})
    assert first[broken] == 1 and manifest()["items"]["failed"] == 1

    grown = with_spec(appended(doc), shards=5, parallelism=5)  # another shard layout, same fingerprint
    second = runs.run(grown, out)
    assert second == Counter([broken] + [i for i in item_ids(grown) if i.endswith(NEW_DATE)])
    assert manifest()["items"] == {"total": 80, "done": 80, "failed": 0, "missing": 0, "generated": 21, "reused": 59}


def test_reuse_off_generates_everything_again(tmp_path):
    doc = with_spec(sample_doc(symbols=6, dates=3, shards=2), reuse={"enabled": False})
    runs = Runs(tmp_path)
    out = f"file://{tmp_path}/out"
    assert runs.run(doc, out) == runs.run(doc, out) == Counter(item_ids(doc))
    assert "off: 18 generated" in runs.stderr
    assert not (tmp_path / "out" / "items").exists()


def test_rows_older_than_max_age_are_generated_again(tmp_path):
    import time

    doc = sample_doc(symbols=6, dates=3, shards=2)
    runs = Runs(tmp_path)
    out = f"file://{tmp_path}/out"
    assert runs.run(doc, out) == Counter(item_ids(doc))
    assert runs.run(with_spec(doc, reuse={"maxAgeSeconds": 3600}), out) == Counter()
    time.sleep(2)  # the rows are now older than a one-second limit
    assert runs.run(with_spec(doc, reuse={"maxAgeSeconds": 1}), out) == Counter(item_ids(doc))


def test_only_the_items_to_generate_start_a_process(tmp_path):
    doc = sample_doc(symbols=20, dates=3, shards=4)
    runs = Runs(tmp_path)
    out = f"file://{tmp_path}/out"
    broken = "ACO:2023-02-28"  # in shard 0 of 4
    assert runs.run(doc, out, env={"SMF_FAIL_ITEMS": broken})[broken] == 1

    def processes(n: int) -> list[str]:
        logs = (tmp_path / f"work-{n}").glob("logs/*/*.log")
        return sorted(p.name for p in logs)

    assert runs.run(doc, out) == Counter([broken])  # only the failed item is made again
    assert processes(2) == ["packet-00000.log"]
    said = " ".join(runs.stderr.split())  # as printed, but wrapped at the terminal's width
    assert "plan: 1 items to generate in 1 work packet (a process each), 59 reused; 1 of 4 shards with work" in said
    once, _ = published(tmp_path / "out")
    digest = sha256(once)

    assert runs.run(doc, out) == Counter()  # nothing new: no process at all
    assert processes(3) == [] and "plan: 0 items to generate in 0 work packets" in " ".join(runs.stderr.split())
    again, manifest = published(tmp_path / "out")
    assert sha256(again) == digest and (manifest["items"]["generated"], manifest["items"]["reused"]) == (0, 60)
