"""generator.itemTimeoutSeconds through `dsj run`: a hanging item fails and its shard commits;
a worker with too many stuck calls restarts and loses nothing; a command out of time is killed."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.runs import datasetjob, dsj, published, write_doc

# Appends each call's item to CALLS_LOG (one write per line: threads and processes never mix
# lines), then hangs on the items of HANG_ITEMS.
GENERATOR = """
import os
import threading


def generate(item, ctx):
    fd = os.open(os.environ["CALLS_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (item + "\\n").encode())
    finally:
        os.close(fd)
    if item in os.environ.get("HANG_ITEMS", "").split(","):
        threading.Event().wait()
    return {"id": item, "size": len(item)}
"""

# Command mode: a shard holding a hanging item never ends (nor does the child it started).
COMMAND = """
import json, os, subprocess, sys, time

items_file, shard = sys.argv[1], sys.argv[2]
items = [json.loads(line) for line in open(items_file)]
if set(items) & set(os.environ.get("HANG_ITEMS", "").split(",")):
    subprocess.Popen(["sleep", os.environ["SLEEP_SECONDS"]])
    time.sleep(3600)
os.makedirs("out", exist_ok=True)
with open(f"out/{shard}.jsonl", "w") as f:
    for item in items:
        f.write(json.dumps({"id": item, "size": len(item)}) + "\\n")
"""

ITEMS = [f"item{n:02d}" for n in range(12)]
SLEEP_SECONDS = f"3600.{os.getpid()}"  # tells the command's child from any other sleep


def run(tmp_path: Path, name: str, generator: dict, hang: set[str], *extra: str, **spec) -> tuple[int, str, Path]:
    (tmp_path / "hanggen.py").write_text(GENERATOR)
    (tmp_path / "hangcmd.py").write_text(COMMAND)
    spec = {
        "items": {"values": ITEMS},
        "shards": 2,
        "generator": generator,
        "output": {"format": "jsonl"},
        "combine": {"minItemSuccessRatio": 0.5},
        **spec,
    }
    doc = datasetjob(name, **spec)
    out = tmp_path / f"out-{name}"
    proc = dsj(
        "run",
        str(write_doc(doc, tmp_path / f"{name}.yaml")),
        "--output",
        f"file://{out}",
        "--workdir",
        str(tmp_path / f"work-{name}"),
        "--quiet",
        *extra,
        cwd=tmp_path,
        env={
            "CALLS_LOG": str(tmp_path / f"calls-{name}.log"),
            "HANG_ITEMS": ",".join(sorted(hang)),
            "SLEEP_SECONDS": SLEEP_SECONDS,
            "DSJ_EMBEDDED_CACHE_DIR": str(tmp_path / "cache"),
        },
        timeout=240,  # generous: a hang must end in a timeout, never in the test's
    )
    return proc.returncode, proc.stderr, out


def calls(tmp_path: Path, name: str) -> Counter[str]:
    return Counter((tmp_path / f"calls-{name}.log").read_text().split())


def failures(out: Path) -> list[dict]:
    return [
        json.loads(line) for f in sorted(out.glob("runs/*/failures/*.jsonl")) for line in f.read_text().splitlines()
    ]


def dataset_ids(out: Path) -> Counter[str]:
    dataset, _ = published(out)
    return Counter(json.loads(line)["id"] for line in dataset.read_text().splitlines())


def shard_logs(tmp_path: Path, name: str) -> str:
    return "".join(p.read_text() for p in sorted((tmp_path / f"work-{name}" / "logs").glob("*/*.log")))


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_hanging_item_times_out_and_its_shard_commits_the_others(tmp_path, concurrency):
    name = f"hang{concurrency}"
    code, stderr, out = run(
        tmp_path,
        name,
        {"function": "hanggen:generate", "itemTimeoutSeconds": 1, "concurrency": concurrency},
        {"item03"},
    )
    assert code == 0, stderr
    _, manifest = published(out)
    assert (manifest["items"]["done"], manifest["items"]["failed"]) == (11, 1)
    [failure] = failures(out)
    assert failure["id"] == "item03"
    assert failure["error"].startswith("ItemTimeout: still running after 1 s; abandoned at hanggen.py:")
    assert dataset_ids(out) == Counter(set(ITEMS) - {"item03"})
    assert calls(tmp_path, name) == Counter(ITEMS)  # every item once: no retry, no restart
    assert "restarting the worker" not in shard_logs(tmp_path, name)


@pytest.mark.parametrize("concurrency", [1, 2])
def test_too_many_stuck_items_restart_the_worker_which_loses_nothing(tmp_path, concurrency):
    """More stuck calls than max(2, concurrency) in one shard: the worker checkpoints and
    restarts (no shard retry is spent: perShard 0), and each item is still called once."""
    name = f"restart{concurrency}"
    hang = {"item01", "item02", "item04", "item07"}
    code, stderr, out = run(
        tmp_path,
        name,
        {"function": "hanggen:generate", "itemTimeoutSeconds": 1, "concurrency": concurrency},
        hang,
        shards=1,
        retries={"perShard": 0},
    )
    assert code == 0, stderr
    assert "restarting the worker" in shard_logs(tmp_path, name)
    _, manifest = published(out)
    assert (manifest["items"]["done"], manifest["items"]["failed"]) == (8, 4)
    assert {f["id"] for f in failures(out)} == hang
    assert all(f["error"].startswith("ItemTimeout: still running after 1 s") for f in failures(out))
    assert dataset_ids(out) == Counter(set(ITEMS) - hang)
    assert calls(tmp_path, name) == Counter(ITEMS)  # nothing generated twice, no hanging item retried

    # The failed items carried over the restart count for that pass only: --retry-failed reruns them.
    generator = {"function": "hanggen:generate", "itemTimeoutSeconds": 1, "concurrency": concurrency}
    code, stderr, out = run(tmp_path, name, generator, set(), "--retry-failed", shards=1, retries={"perShard": 0})
    assert code == 0, stderr
    assert published(out)[1]["items"]["done"] == 12 and failures(out) == []
    assert calls(tmp_path, name) == Counter(ITEMS) + Counter(hang)


def test_a_command_out_of_time_is_killed_and_its_items_fail(tmp_path):
    code, stderr, out = run(
        tmp_path,
        "command",
        {
            "command": [sys.executable, "hangcmd.py", "{items_file}", "{shard}"],
            "outputFile": "out/{shard}.jsonl",
            "idColumn": "id",
            "itemTimeoutSeconds": 0.5,
        },
        {"item02"},
    )
    assert code == 0, stderr
    _, manifest = published(out)
    assert (manifest["items"]["done"], manifest["items"]["failed"]) == (6, 6)
    recorded = failures(out)
    assert {f["id"] for f in recorded} == set(ITEMS[:6])
    assert all(
        f["error"].startswith("ItemTimeout: the generator command ran longer than 3 s (generator.itemTimeoutSeconds")
        for f in recorded
    )
    assert dataset_ids(out) == Counter(ITEMS[6:])
    assert not any(_sleepers())


def _sleepers() -> list[int]:
    """Live processes the killed command started."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if cmd[:2] == [b"sleep", SLEEP_SECONDS.encode()] and state != "Z":
                found.append(int(entry.name))
    return found
