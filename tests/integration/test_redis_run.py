"""`dsj run --redis-url` on the full smart-money sample (3,600 items, 10 shards) against a real
redis-server: a SIGKILLed shard resumes from its checkpoint, and a Redis killed mid-run
degrades without changing a byte of the dataset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from datasetjob.progress import read_redis_progress, sum_shard_progress
from tests.integration.runs import SAMPLE, dsj, published, sha256

NAMESPACE = "smart-money-flow"  # spec.cache.namespace defaults to the DatasetJob name
TOTAL_ITEMS = 3600
WARNING = "shared Redis at"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[str, str]:
    """(run id, sha256) of the sample's dataset made without Redis (the embedded cache)."""
    tmp = tmp_path_factory.mktemp("reference")
    out = tmp / "out"
    dsj(
        "run",
        str(SAMPLE),
        "--output",
        f"file://{out}",
        "--workdir",
        str(tmp / "work"),
        "--quiet",
        cwd=tmp,
        env={"DSJ_EMBEDDED_CACHE_DIR": str(tmp / "cache")},
        check=True,
    )
    dataset, manifest = published(out)
    assert manifest["dataset"]["rows"] == TOTAL_ITEMS
    return manifest["runId"], sha256(dataset)


def start_run(tmp: Path, redis_url: str, latency_ms: int) -> subprocess.Popen:
    env = dict(os.environ, SMF_LATENCY_MS=str(latency_ms), DSJ_EMBEDDED_CACHE_DIR=str(tmp / "unused-cache"))
    cmd = [
        sys.executable,
        "-m",
        "datasetjob",
        "run",
        str(SAMPLE),
        "--output",
        f"file://{tmp / 'out'}",
        "--workdir",
        str(tmp / "work"),
        "--redis-url",
        redis_url,
        "--quiet",
    ]
    return subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 240, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"dsj run ended (exit {proc.returncode}) before {what}\n{out}\n{err}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"dsj run exited {proc.returncode}\n{out}\n{err}"
    return out


def worker_pid(workdir: Path, index: int) -> int | None:
    """The pid of the `dsj worker --index N` process the runner started for this workdir."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if (
            "worker" in args
            and "--index" in args
            and args[args.index("--index") + 1] == str(index)
            and any(a.startswith(str(workdir)) for a in args)
        ):
            return int(entry.name)
    return None


def shard_logs(workdir: Path) -> dict[int, str]:
    return {int(p.stem.split("-")[1]): p.read_text() for p in workdir.glob("logs/*/shard-*.log")}


def check_dataset(out: Path, reference_sha: str) -> dict:
    dataset, manifest = published(out)
    assert sha256(dataset) == reference_sha
    assert manifest["dataset"]["rows"] == TOTAL_ITEMS and manifest["duplicatesDropped"] == 0
    keys = Counter(tuple(line.split(",")[:2]) for line in dataset.read_text().splitlines()[1:])
    assert len(keys) == TOTAL_ITEMS and max(keys.values()) == 1
    return manifest


def test_a_killed_shard_reruns_skipping_its_checkpointed_items(tmp_path, redis_url, reference):
    run_id, reference_sha = reference
    workdir = tmp_path / "work"
    proc = start_run(tmp_path, redis_url, latency_ms=40)
    try:

        def shard3_midway():
            snap = read_redis_progress(redis_url, NAMESPACE, run_id).get(3)
            return snap and 100 <= snap["items"]["done"] < 300 and snap

        before = wait_for(shard3_midway, proc, what="shard 3 to be midway")
        pid = worker_pid(workdir, 3)
        assert pid, "no worker process for shard 3"
        os.kill(pid, signal.SIGKILL)
        finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    manifest = check_dataset(tmp_path / "out", reference_sha)
    shard3 = json.loads((tmp_path / "out" / "runs" / run_id / "shards" / "shard-00003.json").read_text())
    assert shard3["items"]["done"] == 360 and shard3["items"]["failed"] == 0
    # Some items came from the checkpoint; at most those done before the kill (plus the few done
    # between the snapshot and the kill). How many is the flush period's worth short of them
    # depends on the machine's pace, so only that some were skipped is asserted.
    assert 0 < shard3["items"]["skipped"] <= before["items"]["done"] + 25
    assert manifest["shards"]["shard-00003"]["items"]["skipped"] == shard3["items"]["skipped"]
    shard_rows = (tmp_path / "out" / "runs" / run_id / "shards" / "shard-00003.csv").read_text().splitlines()
    assert len(shard_rows) == 1 + 360 and len(set(shard_rows)) == len(shard_rows)
    log = shard_logs(workdir)[3]
    assert "--- attempt 2" in log and "already done by an earlier attempt" in log
    # the second attempt found the first attempt's upstream results in Redis
    assert shard3["cache"]["hits"] > 0
    final = read_redis_progress(redis_url, NAMESPACE, run_id)
    assert len(final) == 10 and all(s["state"] == "committed" for s in final.values())
    assert sum_shard_progress(final)["items"]["done"] == TOTAL_ITEMS


def test_redis_killed_mid_run_completes_with_one_warning_per_worker(tmp_path, redis_server, redis_url, reference):
    run_id, reference_sha = reference
    workdir = tmp_path / "work"
    proc = start_run(tmp_path, redis_url, latency_ms=40)
    try:

        def a_sixth_done():
            snaps = read_redis_progress(redis_url, NAMESPACE, run_id)
            return len(snaps) == 10 and sum_shard_progress(snaps)["items"]["done"] >= TOTAL_ITEMS // 6 and snaps

        at_kill = wait_for(a_sixth_done, proc, what="a sixth of the items")
        redis_server.kill()
        finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        redis_server.start()

    check_dataset(tmp_path / "out", reference_sha)
    logs = shard_logs(workdir)
    assert len(logs) == 10
    for index, text in sorted(logs.items()):
        warnings = [line for line in text.splitlines() if WARNING in line]
        assert "--- attempt 2" not in text, f"shard {index} was retried:\n{text}"
        if at_kill[index]["state"] != "committed":
            assert len(warnings) == 1, f"shard {index}:\n{text}"
            assert "is unavailable" in warnings[0] and "WARNING" in warnings[0]
        else:
            assert len(warnings) <= 1


def test_unreachable_redis_at_start_runs_without_it(tmp_path, reference):
    from tests.fixtures.services import free_port

    run_id, reference_sha = reference
    proc = start_run(tmp_path, f"redis://127.0.0.1:{free_port()}/0", latency_ms=1)
    finish(proc)
    manifest = check_dataset(tmp_path / "out", reference_sha)
    assert manifest["cache"]["hits"] > 0  # repeats within a worker are still served in-process
    for index, text in shard_logs(tmp_path / "work").items():
        warnings = [line for line in text.splitlines() if WARNING in line]
        assert len(warnings) == 1, f"shard {index}:\n{text}"
