"""`dsj run` end to end on the smart-money sample (scaled down), as a user runs it."""

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

from tests.integration.runs import dsj, published, sample_doc, sha256, write_doc


def run_sample(tmp_path: Path, name: str, doc: dict, *extra: str, env: dict | None = None):
    spec = write_doc(doc, tmp_path / f"{name}.yaml")
    out = tmp_path / f"out-{name}"
    proc = dsj(
        "run",
        str(spec),
        "--output",
        f"file://{out}",
        "--workdir",
        str(tmp_path / f"work-{name}"),
        *extra,
        cwd=tmp_path,
        env={"DSJ_EMBEDDED_CACHE_DIR": str(tmp_path / "cache"), **(env or {})},
    )
    return proc, out


@pytest.mark.parametrize("sort", [True, False], ids=["sorted", "item-order"])
def test_dataset_is_identical_for_any_worker_and_shard_count(tmp_path, sort):
    digests = {}
    for shards, workers in [(1, 1), (7, 7), (10, 1), (10, 10)]:
        doc = sample_doc(symbols=12, dates=6, shards=shards)
        if not sort:
            del doc["spec"]["combine"]["sortBy"]
        proc, out = run_sample(tmp_path, f"s{shards}w{workers}", doc, "--workers", str(workers))
        assert proc.returncode == 0, proc.stderr
        dataset, manifest = published(out)
        digests[(shards, workers)] = sha256(dataset)
        assert manifest["dataset"]["sha256"] == digests[(shards, workers)]
        lines = dataset.read_text().splitlines()
        assert len(lines) == 1 + 72 and len(set(lines)) == len(lines)
    assert len(set(digests.values())) == 1, digests


def test_failing_items_are_recorded_and_the_ratio_gates_publishing(tmp_path):
    from smart_money.api import _unit

    doc = sample_doc(symbols=20, dates=36, shards=5)
    ids = [
        f"{s}:{d}" for s in doc["spec"]["items"]["product"]["symbol"] for d in doc["spec"]["items"]["product"]["date"]
    ]
    failing = {i for i in ids if _unit("fail", *i.split(":")) < 0.02 * 1_000_000}
    assert 0 < len(failing) < 0.03 * len(ids)

    proc, out = run_sample(tmp_path, "tolerant", doc, env={"SMF_FAIL_RATIO": "0.02"})
    assert proc.returncode == 0, proc.stderr
    dataset, manifest = published(out)
    run_dir = out / "runs" / manifest["runId"]
    recorded = [
        json.loads(line) for f in sorted((run_dir / "failures").glob("*.jsonl")) for line in f.read_text().splitlines()
    ]
    assert {r["id"] for r in recorded} == failing
    assert all("ConnectionError: upstream returned 502" in r["error"] for r in recorded)
    rows = Counter(tuple(line.split(",")[:2]) for line in dataset.read_text().splitlines()[1:])
    assert set(f"{s}:{d}" for s, d in rows) == set(ids) - failing
    assert set(rows.values()) == {1}
    assert manifest["items"] == {
        "total": len(ids),
        "done": len(ids) - len(failing),
        "failed": len(failing),
        "missing": 0,
        "generated": len(ids) - len(failing),
        "reused": 0,
    }
    assert f"{len(ids) - len(failing)} done, {len(failing)} failed" in proc.stderr

    doc["spec"]["combine"]["minItemSuccessRatio"] = 0.99
    proc, out = run_sample(tmp_path, "strict", doc, env={"SMF_FAIL_RATIO": "0.02"})
    assert proc.returncode == 1
    assert "Not published" in proc.stderr and "TooFewItems" in proc.stderr
    assert f"only {len(ids) - len(failing)} of {len(ids)} items succeeded" in " ".join(proc.stderr.split())
    assert not (out / "latest.json").exists()


def test_second_run_is_served_from_the_warm_embedded_cache(tmp_path):
    doc = sample_doc(symbols=6, dates=6, shards=3)
    first, out1 = run_sample(tmp_path, "cold", doc)
    second, out2 = run_sample(tmp_path, "warm", doc)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    _, cold = published(out1)
    _, warm = published(out2)
    assert cold["cache"]["misses"] == 6 + 6 + 36  # unique upstream calls, thanks to single-flight
    assert warm["cache"]["misses"] == 0 and warm["cache"]["hits"] == 3 * 36
    assert cold["dataset"]["sha256"] == warm["dataset"]["sha256"]


def _worker_pids(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "datasetjob worker" in cmd and marker in cmd:
                pids.append(int(entry.name))
    return pids


def test_sigkill_mid_shard_then_resume_gives_the_same_dataset(tmp_path):
    doc = sample_doc(symbols=10, dates=12, shards=2)
    reference, ref_out = run_sample(tmp_path, "reference", doc)
    assert reference.returncode == 0, reference.stderr

    spec = write_doc(doc, tmp_path / "crash.yaml")
    out, work = tmp_path / "out-crash", tmp_path / "work-crash"
    # Slow enough that a checkpoint (flushed about once a second) appears before the shards end.
    env = dict(os.environ, SMF_LATENCY_MS="60", DSJ_EMBEDDED_CACHE_DIR=str(tmp_path / "cache-crash"))
    args = [
        sys.executable,
        "-m",
        "datasetjob",
        "run",
        str(spec),
        "--output",
        f"file://{out}",
        "--workdir",
        str(work),
        "--quiet",
    ]
    runner = subprocess.Popen(
        args, cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not list(out.glob("runs/*/checkpoints/*/part-*.jsonl")):
        assert time.monotonic() < deadline and runner.poll() is None, "no checkpoint appeared"
        time.sleep(0.05)
    os.killpg(runner.pid, signal.SIGKILL)  # the machine dies: runner and every worker at once
    for pid in _worker_pids(str(work)):
        os.kill(pid, signal.SIGKILL)
    runner.wait()

    run_dir = next(out.glob("runs/*"))
    for data in (run_dir / "shards").glob("*.csv"):  # anything visible is whole and committed
        assert data.with_suffix(".json").exists()
    assert not list((run_dir / "shards").glob("*.part"))

    resumed = subprocess.run(
        args[:-1] + ["--resume"],
        cwd=tmp_path,
        env=dict(env, SMF_LATENCY_MS="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    dataset, manifest = published(out)
    ref_dataset, _ = published(ref_out)
    assert sha256(dataset) == sha256(ref_dataset)
    lines = dataset.read_text().splitlines()
    assert len(lines) == len(set(lines)) == 1 + 120
    skipped = sum(json.loads(p.read_text())["items"]["skipped"] for p in (run_dir / "shards").glob("*.json"))
    assert skipped > 0  # finished items were not generated again


def test_ctrl_c_stops_workers_and_says_how_to_resume(tmp_path):
    doc = sample_doc(symbols=10, dates=12, shards=2)
    spec = write_doc(doc, tmp_path / "int.yaml")
    out, work = tmp_path / "out-int", tmp_path / "work-int"
    env = dict(os.environ, SMF_LATENCY_MS="30", DSJ_EMBEDDED_CACHE_DIR=str(tmp_path / "cache"))
    runner = subprocess.Popen(
        [sys.executable, "-m", "datasetjob", "run", str(spec), "--output", f"file://{out}", "--workdir", str(work)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(work.glob("logs/*/.progress/*.json")):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    runner.send_signal(signal.SIGINT)
    _, err = runner.communicate(timeout=60)
    assert runner.returncode == 130
    assert "--resume" in err
    assert _worker_pids(str(work)) == []


def test_retry_failed_reruns_only_the_failed_items(tmp_path):
    doc = sample_doc(symbols=10, dates=12, shards=3)
    doc["spec"]["combine"]["minItemSuccessRatio"] = 0.8
    reference, ref_out = run_sample(tmp_path, "clean", doc)
    assert reference.returncode == 0, reference.stderr

    spec = write_doc(doc, tmp_path / "flaky.yaml")
    out = tmp_path / "out-flaky"
    common = ["run", str(spec), "--output", f"file://{out}", "--workdir", str(tmp_path / "w")]
    env = {"DSJ_EMBEDDED_CACHE_DIR": str(tmp_path / "cache-flaky")}
    first = dsj(*common, cwd=tmp_path, env=dict(env, SMF_FAIL_RATIO="0.05"))
    assert first.returncode == 0, first.stderr
    _, before = published(out)
    assert before["items"]["failed"] > 0

    retry = dsj(*common, "--retry-failed", cwd=tmp_path, env=env)
    assert retry.returncode == 0, retry.stderr
    dataset, after = published(out)
    assert after["items"] == {"total": 120, "done": 120, "failed": 0, "missing": 0, "generated": 120, "reused": 0}
    assert sha256(dataset) == sha256(published(ref_out)[0])
    for name, shard in before["shards"].items():
        now = json.loads((out / "runs" / after["runId"] / "shards" / f"{name}.json").read_text())
        if shard["items"]["failed"]:  # rerun: its done items came from the checkpoint
            assert now["items"]["skipped"] == shard["items"]["done"]
            assert now["items"]["done"] == shard["items"]["done"] + shard["items"]["failed"]
        else:  # untouched
            assert now["sha256"] == shard["sha256"] and now["items"]["skipped"] == 0
