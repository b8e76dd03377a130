"""Local-mode benchmark on the full smart-money sample (3,600 items, 3 upstream calls each).

Prints wall times and ratios measured side by side in one run:
  (a) 1 worker, no cache            (b) 10 workers, cold embedded cache
  (c) 10 workers, warm cache        (d) the original bash pattern, cold cache (as b)
  (e) 10 workers x concurrency 8    (f) one process, ThreadPoolExecutor(80) + dict cache
Usage: python tests/bench/bench_local.py [--latency-ms 20] [--skip-a]
Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "manifests" / "samples" / "smart-money-flow.yaml"
SEED = REPO / "tests" / "bench" / "seed_pattern"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def dsj_run(spec: dict, tmp: Path, name: str, workers: int, cache_dir: Path) -> None:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "datasetjob",
            "run",
            str(path),
            "--workers",
            str(workers),
            "--output",
            f"file://{tmp}/out-{name}",
            "--workdir",
            str(tmp / f"work-{name}"),
            "--quiet",
        ],
        check=True,
        cwd=tmp,
        env=dict(os.environ, DSJ_EMBEDDED_CACHE_DIR=str(cache_dir)),
        stdout=subprocess.DEVNULL,
    )


def seed_pattern(spec: dict, tmp: Path, cache_dir: Path) -> None:
    product = spec["spec"]["items"]["product"]
    ids = [f"{s}:{d}" for s in product["symbol"] for d in product["date"]]
    items = tmp / "seed-items.txt"
    items.write_text("\n".join(ids) + "\n")
    out = tmp / "seed-out"
    out.mkdir()
    env = dict(
        os.environ, DSJ_EMBEDDED_CACHE_DIR=str(cache_dir), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    )
    subprocess.run(["bash", str(SEED / "generate-parallel.sh"), str(items), str(out), "10"], check=True, env=env)
    subprocess.run(
        [sys.executable, str(SEED / "combine-datasets.py"), str(out)], check=True, env=env, stdout=subprocess.DEVNULL
    )


def thread_pool_baseline(spec: dict) -> None:
    """What a Python user writes instead: 80 threads and a dict as the cache (no single-flight)."""
    from smart_money.generate import example

    cache: dict = {}
    lock = threading.Lock()

    class Ctx:
        def cached(self, key, fn, ttl=None):
            with lock:
                if key in cache:
                    return cache[key]
            value = fn()
            with lock:
                cache[key] = value
            return value

    product = spec["spec"]["items"]["product"]
    items = [{"symbol": s, "date": d} for s in product["symbol"] for d in product["date"]]
    with ThreadPoolExecutor(80) as pool:
        rows = list(pool.map(lambda it: example(it, Ctx()), items))
    assert len(rows) == len(items)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--skip-a", action="store_true", help="skip the slow sequential baseline")
    parser.add_argument("--cases", default="abcdef", help="which cases to run, e.g. ef")
    args = parser.parse_args()
    os.environ["SMF_LATENCY_MS"] = str(args.latency_ms)
    latency = args.latency_ms / 1000
    spec = yaml.safe_load(SAMPLE.read_text())
    product = spec["spec"]["items"]["product"]
    n_items = len(product["symbol"]) * len(product["date"])
    unique_calls = len(product["symbol"]) + len(product["date"]) + n_items

    tmp = Path(tempfile.mkdtemp(prefix="dsj-bench-"))
    try:
        no_cache = yaml.safe_load(yaml.safe_dump(spec))
        no_cache["spec"]["cache"] = {"redisUrl": ""}
        no_cache["spec"]["generator"]["concurrency"] = 1
        plain = yaml.safe_load(yaml.safe_dump(spec))
        plain["spec"]["generator"]["concurrency"] = 1
        wide = yaml.safe_load(yaml.safe_dump(spec))
        wide["spec"]["generator"]["concurrency"] = 8

        cases = {
            "a": lambda: dsj_run(no_cache, tmp, "a", 1, tmp / "cache-a"),
            "b": lambda: dsj_run(plain, tmp, "b", 10, tmp / "cache-b"),
            "c": lambda: dsj_run(plain, tmp, "c", 10, tmp / "cache-b"),  # warm: b's cache
            "d": lambda: seed_pattern(spec, tmp, tmp / "cache-d"),
            "e": lambda: dsj_run(wide, tmp, "e", 10, tmp / "cache-e"),
            "f": lambda: thread_pool_baseline(spec),
        }
        wanted = set(args.cases) - ({"a"} if args.skip_a else set())
        if "c" in wanted:
            wanted.add("b")  # c is b's warm rerun
        t = {key: timed(run) for key, run in cases.items() if key in wanted}

        ideal_b = unique_calls * latency / 10
        ideal_e = unique_calls * latency / 80
        print(
            f"\nsmart-money sample: {n_items} items, {unique_calls} unique upstream calls, "
            f"{args.latency_ms:g} ms latency, {os.cpu_count()} CPUs\n"
        )
        labels = {
            "a": "1 worker, no cache",
            "b": "10 workers, cold cache",
            "c": "10 workers, warm cache",
            "d": "bash pattern, 10 procs, cold cache",
            "e": "10 workers x concurrency 8, cold",
            "f": "1 process, ThreadPoolExecutor(80), dict cache",
        }
        for key, label in labels.items():
            if key in t:
                print(f"  ({key}) {label:<48} {t[key]:8.2f} s")
        print()
        if {"a", "b", "c"} <= set(t):
            print(f"  speedup b/a (a over b)        {t['a'] / t['b']:7.1f}x")
            print(f"  speedup c/a (a over c)        {t['a'] / t['c']:7.1f}x   (target >= 30x)")
        if {"b", "d"} <= set(t):
            print(f"  b vs d (d time / b time)      {t['d'] / t['b']:7.2f}    (target >= 1: b no slower than d)")
        if "b" in t:
            print(f"  b efficiency vs ideal         {ideal_b / t['b']:7.1%}   (ideal {ideal_b:.2f} s; target >= 85%)")
        if {"e", "f"} <= set(t):
            print(f"  e vs f (f time / e time)      {t['f'] / t['e']:7.2f}    (target >= 1: e no slower than f)")
        if "e" in t:
            print(f"  e share of ideal              {ideal_e / t['e']:7.1%}   (ideal {ideal_e:.2f} s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
