"""A shard on a real S3 server: its checkpoint writes are bounded by time, not by items, and a
worker SIGKILLed mid-shard is resumed generating only the items it had not checkpointed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.integration.runs import datasetjob

# Each item it starts is appended to $CALLS, so the items made twice can be counted.
GENERATOR = """
import os, time
_calls = open(os.environ["CALLS"], "a", buffering=1)

def slow(item, ctx):
    _calls.write(f"{item}\\n")
    time.sleep(0.002)
    return {"i": item, "sq": item * item}
"""

# The worker, with every S3 PUT it makes appended to $PUTS (a boto3 event hook on its client).
COUNTING_WORKER = """
import os, sys
from datasetjob.store import backends

_init = backends.S3Store.__init__
_puts = open(os.environ["PUTS"], "a", buffering=1)

def _count(params, **_):
    _puts.write(params["Key"] + "\\n")

def _init_counting(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    for call in ("PutObject", "CreateMultipartUpload"):
        self.client.meta.events.register(f"before-parameter-build.s3.{call}", _count)

backends.S3Store.__init__ = _init_counting
from datasetjob.cli import main
sys.exit(main(sys.argv[1:]))
"""

ITEMS = 4000


def _kinds(keys: list[str]) -> Counter[str]:
    """PUTs by what they write: checkpoint parts, reuse segments, shard data, the rest."""
    kinds: Counter[str] = Counter()
    for key in keys:
        if "/checkpoints/" in key:
            kinds["checkpoint parts"] += 1
        elif "/segments/" in key:
            kinds["reuse segments"] += 1
        else:
            kinds["other (data, failures, manifests)"] += 1
    return kinds


def test_a_sigkilled_shard_on_s3_resumes_from_its_last_flush(tmp_path: Path, s3_server, s3_bucket):
    (tmp_path / "counted.py").write_text(GENERATOR)
    (tmp_path / "worker.py").write_text(COUNTING_WORKER)
    doc = datasetjob(
        "s3-resume",
        items={"range": {"stop": ITEMS}},
        shards=1,
        generator={"image": "test", "function": "counted:slow"},
        output={"format": "parquet", "uri": f"s3://{s3_bucket}/ds", "endpointUrl": s3_server.endpoint_url},
    )
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(doc))
    calls, puts = tmp_path / "calls.txt", tmp_path / "puts.txt"
    env = dict(os.environ, **s3_server.env(), CALLS=str(calls), PUTS=str(puts), DSJ_GENERATOR_PATH=str(tmp_path))
    argv = [
        sys.executable,
        str(tmp_path / "worker.py"),
        "worker",
        "--spec",
        str(spec),
        "--index",
        "0",
        "--run-id",
        "r1",
    ]
    s3 = s3_server.client()
    prefix = "ds/runs/r1/checkpoints/"

    def parts() -> list[str]:
        return [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix=prefix).get("Contents", [])]

    worker = subprocess.Popen(argv, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(parts()) < 2 and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert worker.poll() is None, f"the worker ended before it could be killed: {worker.stderr.read()[-3000:]}"
        assert len(parts()) >= 2, "no checkpoint was written within 120 s"
    finally:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
        worker.wait()

    started = calls.read_text().split()
    first_puts = puts.read_text().split()
    checkpointed: set[str] = set()
    for key in parts():
        body = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read().decode()
        checkpointed |= {str(json.loads(line)["position"]) for line in body.splitlines() if line}
    first = _kinds(first_puts)
    # One part per flush, never one per item.
    assert first["checkpoint parts"] == len(parts()) < len(checkpointed)
    assert checkpointed <= set(started) and len(started) < ITEMS

    puts.write_text("")
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    made = Counter(calls.read_text().split())
    again = {item for item, n in made.items() if n > 1}
    # Every item is generated; again only those started but not checkpointed before the kill.
    assert set(made) == {str(i) for i in range(ITEMS)}
    assert again == set(started) - checkpointed
    assert all(n <= 2 for n in made.values())
    assert parts() == []  # the commit removed every part
    second = _kinds(puts.read_text().split())
    manifest = json.loads(s3.get_object(Bucket=s3_bucket, Key="ds/runs/r1/shards/shard-00000.json")["Body"].read())
    assert manifest["items"]["done"] == ITEMS and manifest["items"]["skipped"] == len(checkpointed)
    print(
        f"\n[measure] {ITEMS} items of 2 ms, one shard on S3, SIGKILLed after {len(started)} items: "
        f"PUTs before the kill {dict(first)}; after the resume {dict(second)}; "
        f"{len(checkpointed)} items checkpointed, {len(again)} generated again"
    )
