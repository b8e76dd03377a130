"""One run per output: a run holds a lease on runs/<runId>/, a second run is refused naming the
holder, workers die with their runner, and --resume after the holder died generates each item once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from datasetjob.errors import ExitCode
from tests.integration.probe import calls, probe_doc, write_probe
from tests.integration.runs import dsj

ITEMS = [f"item-{n:03d}" for n in range(200)]


def resume(spec: Path, output: str, work: Path, calls_file: Path, cwd: Path, env: dict | None = None):
    """`dsj run --resume` of the same spec and output, in the foreground, counting calls."""
    args = ("run", str(spec), "--output", output, "--workdir", str(work), "--resume")
    return dsj(*args, cwd=cwd, env=dict(env or {}, PROBE_CALLS=str(calls_file)))


def start_run(spec: Path, output: str, work: Path, calls_file: Path, *extra: str, env: dict | None = None):
    env = dict(os.environ, PROBE_CALLS=str(calls_file), PROBE_SLEEP="0.1", **(env or {}))
    args = [
        sys.executable,
        "-m",
        "datasetjob",
        "run",
        str(spec),
        "--output",
        output,
        "--workdir",
        str(work),
        "--quiet",
        *extra,
    ]
    # Its own session, so the test can kill exactly the runner process and nothing else.
    return subprocess.Popen(
        args,
        cwd=spec.parent,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, what: str, runner: subprocess.Popen | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        assert runner is None or runner.poll() is None, f"runner exited early: {runner.communicate()}"
        time.sleep(0.05)


def worker_pids(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if "datasetjob worker" in cmd and marker in cmd and state != "Z":
                pids.append(int(entry.name))
    return pids


def dataset_ids(out: Path) -> list[str]:
    latest = json.loads((out / "latest.json").read_text())
    lines = Path(latest["dataset"]["uri"].removeprefix("file://")).read_text().splitlines()
    return [line.split(",")[0] for line in lines[1:]]


def test_a_second_run_on_the_same_output_is_refused_naming_the_holder(tmp_path):
    spec = write_probe(probe_doc(ITEMS, shards=2), tmp_path)
    out, work = tmp_path / "out", tmp_path / "work"
    first = start_run(spec, f"file://{out}", work, tmp_path / "calls")
    try:
        wait_for(lambda: list(work.glob("logs/*/.progress/*.json")), "the first run's workers", first)
        for extra in ([], ["--resume"]):
            second = dsj(
                "run",
                str(spec),
                "--output",
                f"file://{out}",
                "--workdir",
                str(work),
                *extra,
                cwd=tmp_path,
                env={"PROBE_CALLS": str(tmp_path / "calls")},
            )
            assert second.returncode == ExitCode.RUN_BUSY, second.stderr
            assert f"pid {first.pid}" in second.stderr and socket.gethostname() in second.stderr
            assert "started" in second.stderr
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert sorted(dataset_ids(out)) == ITEMS
    assert Counter(calls(tmp_path / "calls")) == Counter(ITEMS)  # the refused runs generated nothing


def test_workers_die_with_their_runner_and_resume_generates_each_item_once(tmp_path):
    spec = write_probe(probe_doc(ITEMS, shards=2), tmp_path)
    out, work, calls_file = tmp_path / "out", tmp_path / "work", tmp_path / "calls"
    runner = start_run(spec, f"file://{out}", work, calls_file)
    try:
        wait_for(lambda: list(out.glob("runs/*/checkpoints/*/part-*.jsonl")), "a checkpoint", runner)
        os.kill(runner.pid, signal.SIGKILL)  # only the runner: its workers must notice by themselves
        runner.wait()
        wait_for(lambda: worker_pids(str(work)) == [], "the orphaned workers to exit", timeout=60)
    finally:
        for pid in worker_pids(str(work)):
            os.kill(pid, signal.SIGKILL)
    before = calls(calls_file)
    assert 0 < len(before) < len(ITEMS)

    resumed = resume(spec, f"file://{out}", work, calls_file, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(dataset_ids(out)) == ITEMS
    assert Counter(calls(calls_file)) == Counter(ITEMS)  # no item generated twice


def test_resume_takes_over_immediately_after_the_holder_died(tmp_path):
    spec = write_probe(probe_doc(ITEMS, shards=2), tmp_path)
    out, work, calls_file = tmp_path / "out", tmp_path / "work", tmp_path / "calls"
    runner = start_run(spec, f"file://{out}", work, calls_file)
    wait_for(lambda: list(out.glob("runs/*/checkpoints/*/part-*.jsonl")), "a checkpoint", runner)
    os.killpg(runner.pid, signal.SIGKILL)  # the whole machine's view of the run dies at once
    runner.wait()
    wait_for(lambda: worker_pids(str(work)) == [], "the killed workers to be reaped", timeout=30)
    resumed = resume(spec, f"file://{out}", work, calls_file, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(dataset_ids(out)) == ITEMS


def test_a_second_run_on_the_same_s3_output_is_refused(tmp_path, s3_server, s3_bucket):
    spec = write_probe(probe_doc(ITEMS, shards=2, output={"endpointUrl": s3_server.endpoint_url}), tmp_path)
    output = f"s3://{s3_bucket}/probe"
    env = dict(s3_server.env(), DSJ_EMBEDDED_CACHE_DIR=str(tmp_path / "cache"))
    first = start_run(spec, output, tmp_path / "w1", tmp_path / "calls", env=env)
    try:
        wait_for(lambda: list((tmp_path / "w1").glob("logs/*/.progress/*.json")), "the first run's workers", first)
        # A different work dir: only the store can tell the two runs apart.
        second = dsj("run", str(spec), "--output", output, "--workdir", str(tmp_path / "w2"), cwd=tmp_path, env=env)
        assert second.returncode == ExitCode.RUN_BUSY, second.stderr
        assert f"pid {first.pid}" in second.stderr and "started" in second.stderr
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert Counter(calls(tmp_path / "calls")) == Counter(ITEMS)
    s3 = s3_server.client()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="probe/runs/").get("Contents", [])]
    assert not any(k.endswith("/lease.json") for k in keys)  # released at the end


def test_an_s3_lease_held_from_another_host_refuses_the_run(tmp_path, s3_server, s3_bucket):
    """The lease object alone decides across hosts; a renewed one belongs to a live run."""
    from datasetjob.spec.documents import load_spec_file
    from datasetjob.spec.model import run_id

    spec = write_probe(probe_doc(ITEMS[:4], shards=1, output={"endpointUrl": s3_server.endpoint_url}), tmp_path)
    run = run_id(load_spec_file(spec).raw_spec)
    holder = {"pid": 4242, "host": "builder-7", "startedAt": "2026-01-01T00:00:00Z"}
    s3_server.client().put_object(
        Bucket=s3_bucket, Key=f"probe/runs/{run}/lease.json", Body=json.dumps(holder).encode()
    )
    env = dict(s3_server.env(), DSJ_EMBEDDED_CACHE_DIR=str(tmp_path / "cache"))
    proc = resume(spec, f"s3://{s3_bucket}/probe", tmp_path / "w", tmp_path / "calls", tmp_path, env)
    assert proc.returncode == ExitCode.RUN_BUSY, proc.stderr
    assert "pid 4242 on builder-7, started 2026-01-01T00:00:00Z" in proc.stderr
    assert calls(tmp_path / "calls") == []


def test_resume_on_s3_takes_over_after_the_holder_died(tmp_path, s3_server, s3_bucket):
    spec = write_probe(probe_doc(ITEMS, shards=2, output={"endpointUrl": s3_server.endpoint_url}), tmp_path)
    output, work, calls_file = f"s3://{s3_bucket}/probe", tmp_path / "work", tmp_path / "calls"
    env = dict(s3_server.env(), DSJ_EMBEDDED_CACHE_DIR=str(tmp_path / "cache"))
    s3 = s3_server.client()

    def checkpointed() -> bool:
        listing = s3.list_objects_v2(Bucket=s3_bucket, Prefix="probe/runs/").get("Contents", [])
        return any("/checkpoints/" in o["Key"] for o in listing)

    runner = start_run(spec, output, work, calls_file, env=env)
    wait_for(checkpointed, "a checkpoint", runner)
    os.kill(runner.pid, signal.SIGKILL)  # the lease object stays behind
    runner.wait()
    try:
        wait_for(lambda: worker_pids(str(work)) == [], "the orphaned workers to exit", timeout=60)
    finally:
        for pid in worker_pids(str(work)):
            os.kill(pid, signal.SIGKILL)
    resumed = resume(spec, output, work, calls_file, tmp_path, env)
    assert resumed.returncode == 0, resumed.stderr
    assert Counter(calls(calls_file)) == Counter(ITEMS)


STOP_LOOP = """
import sys, threading
from datasetjob.worker.lifetime import stop_on_sigterm
stopping = threading.Event()
stop_on_sigterm(stopping)
print("ready", flush=True)
while not stopping.wait(0.00001):  # the main thread holds the event's lock most of the time
    pass
"""


def test_a_burst_of_sigterms_always_stops_the_worker_loop():
    """A handler that set the event itself deadlocked a few percent of stops (found as a worker
    left running after its runner was killed); the relay never does."""
    procs = [subprocess.Popen([sys.executable, "-c", STOP_LOOP], stdout=subprocess.PIPE, text=True) for _ in range(20)]
    try:
        for proc in procs:
            assert proc.stdout.readline() == "ready\n"
            for _ in range(200):
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    break
        # 0, or killed by a signal that came after the interpreter had dropped its handlers on exit
        assert {proc.wait(timeout=30) for proc in procs} <= {0, -signal.SIGTERM}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
