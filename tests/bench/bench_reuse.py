"""Incremental regeneration on the full smart-money sample: the monthly append.

Prints wall times measured side by side in one run, all `dsj run` with 10 workers, 20 ms per
upstream call (by default), and a cold embedded cache each (a month later, the sample's 7-day
cache TTL has long expired):
  (full)  the grown universe (100 symbols x 37 month-ends = 3,700 items) from scratch
  (month) the same spec at an output where last month's run (3,600 items) already is:
          reuse takes its rows, the generator runs for the 100 new items only
  (floor) the grown spec once more at that output: every item reused, nothing generated —
          the fixed cost of a run (processes, reading stored rows, combine, publish)
Goal: month <= 5% of full. Also printed: the slowest shard's own time (its start to its
commit, from its log), i.e. the work of a shard without process start-up and combine.
Usage: python tests/bench/bench_reuse.py [--latency-ms 20]
Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "manifests" / "samples" / "smart-money-flow.yaml"
NEW_DATE = "2026-01-31"


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


def _stamp(line: str) -> float | None:
    m = _STAMP.match(line)
    if not m:
        return None
    when = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
    return when.timestamp() + int(m.group(2)) / 1000


def work_phase(workdir: Path) -> tuple[float, int]:
    """(The slowest process's start-to-commit time, from the shard and work packet logs
    (logging's asctime); how many processes started)."""
    slowest = 0.0
    logs = [*workdir.glob("logs/*/shard-*.log"), *workdir.glob("logs/*/packet-*.log")]
    for log in logs:
        start = None
        for line in log.read_text().splitlines():
            when = _stamp(line)
            if when is not None and " of run " in line:
                start = when
            elif when is not None and "committed:" in line and start is not None:
                slowest = max(slowest, when - start)
    return slowest, len(logs)


def dsj_run(spec: dict, tmp: Path, name: str, output: Path) -> tuple[float, int, float, int]:
    """(wall seconds, generator calls, work phase seconds, processes) of one `dsj run`."""
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    calls = tmp / f"calls-{name}.log"
    env = dict(os.environ, DSJ_EMBEDDED_CACHE_DIR=str(tmp / f"cache-{name}"), SMF_ITEM_LOG=str(calls))
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "datasetjob",
            "run",
            str(path),
            "--workers",
            "10",
            "--output",
            f"file://{output}",
            "--workdir",
            str(tmp / f"work-{name}"),
            "--quiet",
        ],
        check=True,
        cwd=tmp,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    phase, processes = work_phase(tmp / f"work-{name}")
    return wall, len(calls.read_text().split()) if calls.exists() else 0, phase, processes


def published_sha(output: Path) -> str:
    return json.loads((output / "latest.json").read_text())["dataset"]["sha256"]


def published_items(output: Path) -> dict:
    """The last published run's item counts (generated = done - reused)."""
    manifest_uri = json.loads((output / "latest.json").read_text())["manifestUri"]
    items = json.loads(Path(manifest_uri.removeprefix("file://")).read_text())["items"]
    return dict(items, generated=items["done"] - items.get("reused", 0))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    os.environ["SMF_LATENCY_MS"] = str(args.latency_ms)
    month = yaml.safe_load(SAMPLE.read_text())
    grown = copy.deepcopy(month)
    grown["spec"]["items"]["product"]["date"].append(NEW_DATE)

    tmp = Path(tempfile.mkdtemp(prefix="dsj-bench-reuse-"))
    try:
        runs = {
            "full": dsj_run(grown, tmp, "full", tmp / "out-full"),
            "last": dsj_run(month, tmp, "last-month", tmp / "out"),
            "month": dsj_run(grown, tmp, "month", tmp / "out"),
        }
        month_items = published_items(tmp / "out")
        runs["floor"] = dsj_run(grown, tmp, "floor", tmp / "out")
        floor_items = published_items(tmp / "out")
        same = published_sha(tmp / "out") == published_sha(tmp / "out-full")

        print(
            f"\nsmart-money sample + 1 month-end: 3,700 items, {args.latency_ms:g} ms per upstream call, "
            f"10 workers, concurrency {month['spec']['generator']['concurrency']}, {os.cpu_count()} CPUs\n"
        )
        print(f"{'':45} {'wall':>8} {'work':>8} {'processes':>10} {'generator calls':>16}")
        for label, key in (
            ("(full)  grown universe from scratch", "full"),
            ("        (last month's run, 3,600 items)", "last"),
            ("(month) appended month, reusing last month", "month"),
            ("(floor) nothing new: every item reused", "floor"),
        ):
            t, calls, phase, processes = runs[key]
            print(f"  {label:<43} {t:7.2f}s {phase:7.2f}s {processes:10d} {calls:16d}")
        print()
        for label, items in (("month", month_items), ("floor", floor_items)):
            print(f"  ({label}) items: {items['generated']} generated, {items['reused']} reused")
        t_full, t_month, t_floor = runs["full"][0], runs["month"][0], runs["floor"][0]
        print(f"  month / full, wall             {t_month / t_full:7.1%}   (goal <= 5%)")
        print(f"  floor / full, wall             {t_floor / t_full:7.1%}   (the fixed cost of any run)")
        if runs["full"][2]:
            print(
                f"  month / full, work phase       {runs['month'][2] / runs['full'][2]:7.1%}   "
                "(the slowest process, start to commit)"
            )
        print(f"  same sha256 as the full run    {'yes' if same else 'NO'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
