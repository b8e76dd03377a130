"""Redis benchmark: limiter accuracy, cache throughput, and the sample run with Redis.

Starts its own redis-server on a free loopback port and prints three tables:
  1. Limiter accuracy: achieved rate / configured rate at 20, 200 and 2,000 requests/s, for the
     Redis bucket and the local file bucket, with 10 processes competing (target: within ±5%).
  2. Cache throughput from 10 processes (RedisCache.get / set one key per round trip, the
     get_or_compute hit path, and pipelined get_many / set_many) as a ratio to
     `redis-benchmark -t get,set` on the same server (target: >= 0.5 where pipelining applies).
  3. The smart-money sample (3,600 items, 10 workers): --redis-url vs the embedded cache,
     cold and warm.
Usage: python tests/bench/bench_redis.py [--seconds 5] [--latency-ms 20] [--repeats 3] [--skip-sample]
Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
SAMPLE = REPO / "manifests" / "samples" / "smart-money-flow.yaml"
PROCESSES = 10
CTX = mp.get_context("spawn")


def start_redis():
    from tests.fixtures.services import RedisServer

    return RedisServer().start()


# --------------------------------------------------------------------------- 1. limiter


def _limiter_worker(kind, target, scope, rate, burst, seconds, barrier, out):
    from datasetjob.ratelimit import LocalTokenBucket, RedisTokenBucket

    bucket = (
        RedisTokenBucket(target, scope, rate, burst, parallelism=PROCESSES)
        if kind == "redis"
        else LocalTokenBucket(target, scope, rate, burst)
    )
    seen = []
    barrier.wait()
    end = time.time() + seconds
    while True:
        bucket.acquire()
        now = time.time()
        if now > end:
            break
        seen.append(now)
    out.put(seen)


def limiter_accuracy(kind: str, target: str, rate: float, seconds: float) -> tuple[int, float]:
    burst = max(1, int(rate // 10))
    barrier = CTX.Barrier(PROCESSES)
    out = CTX.Queue()
    scope = f"bench-{kind}-{rate:g}-{time.time_ns()}"
    procs = [
        CTX.Process(target=_limiter_worker, args=(kind, target, scope, rate, burst, seconds, barrier, out))
        for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    times = sorted(t for _ in procs for t in out.get(timeout=seconds + 120))
    for p in procs:
        p.join()
    steady = times[burst:]  # after the initial burst: one call per 1/rate
    achieved = (len(steady) - 1) / (steady[-1] - steady[0])
    return len(times), achieved


# --------------------------------------------------------------------------- 2. cache


def _cache_worker(url, mode, seconds, worker, barrier, out):
    from datasetjob.cache.redis_backend import RedisCache

    # local_entries=0: every operation goes to Redis (no in-process table of values read)
    cache = RedisCache(
        url, namespace="bench", default_ttl=3600, run_id="bench", local_entries=1000 if mode == "hit-local" else 0
    )
    keys = [f"w{worker}:k{i}" for i in range(1000)]
    cache.set_many({k: "abc" for k in keys})
    batch = 100
    ops = 0
    barrier.wait()
    start = time.perf_counter()
    end = start + seconds
    i = 0
    while time.perf_counter() < end:
        if mode == "get":
            for _ in range(100):
                cache.get(keys[i % 1000])
                i += 1
            ops += 100
        elif mode == "set":
            for _ in range(100):
                cache.set(keys[i % 1000], "abc")
                i += 1
            ops += 100
        elif mode in ("hit", "hit-local"):
            for _ in range(100):
                cache.get_or_compute(keys[i % 1000], lambda: "abc")
                i += 1
            ops += 100
        elif mode == "get_many":
            j = (i * batch) % 1000
            cache.get_many(keys[j : j + batch])
            i += 1
            ops += batch
        elif mode == "set_many":
            j = (i * batch) % 1000
            cache.set_many({k: "abc" for k in keys[j : j + batch]})
            i += 1
            ops += batch
    out.put(ops / (time.perf_counter() - start))


def cache_throughput(url: str, mode: str, seconds: float) -> float:
    barrier = CTX.Barrier(PROCESSES)
    out = CTX.Queue()
    procs = [CTX.Process(target=_cache_worker, args=(url, mode, seconds, w, barrier, out)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=seconds + 120) for _ in procs)
    for p in procs:
        p.join()
    return total


def redis_benchmark(port: int, pipeline: int = 1) -> dict[str, float]:
    exe = shutil.which("redis-benchmark")
    if not exe:
        return {}
    proc = subprocess.run(
        [exe, "-h", "127.0.0.1", "-p", str(port), "-t", "get,set", "-n", "200000", "-q", "-P", str(pipeline)],
        capture_output=True,
        text=True,
        check=True,
    )
    found = {}
    for name, value in re.findall(r"(GET|SET): ([\d.]+) requests per second", proc.stdout.replace("\r", "\n")):
        found[name.lower()] = float(value)
    return found


# --------------------------------------------------------------------------- 3. the sample


def sample_run(tmp: Path, name: str, latency_ms: int, redis_url: str | None, cache_dir: Path) -> float:
    cmd = [
        sys.executable,
        "-m",
        "datasetjob",
        "run",
        str(SAMPLE),
        "--workers",
        "10",
        "--quiet",
        "--output",
        f"file://{tmp}/out-{name}",
        "--workdir",
        str(tmp / f"work-{name}"),
    ]
    if redis_url:
        cmd += ["--redis-url", redis_url]
    env = dict(os.environ, DSJ_EMBEDDED_CACHE_DIR=str(cache_dir), SMF_LATENCY_MS=str(latency_ms))
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=tmp, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- main


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    print(f"\n{title}")
    print("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  " + "  ".join("-" * w for w in widths))
    for r in rows:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each limiter/cache measurement")
    parser.add_argument("--latency-ms", type=int, default=20, help="SMF_LATENCY_MS for the sample runs")
    parser.add_argument("--repeats", type=int, default=3, help="sample runs per configuration (median)")
    parser.add_argument("--skip-sample", action="store_true")
    args = parser.parse_args()

    server = start_redis()
    tmp = Path(tempfile.mkdtemp(prefix="dsj-bench-redis-"))
    try:
        print(f"redis-server {server.host}:{server.port}; {PROCESSES} processes; {os.cpu_count()} CPUs")
        rows = []
        for rate in (20.0, 200.0, 2000.0):
            for kind, target in (("redis", server.url), ("file", str(tmp / "buckets"))):
                n, achieved = limiter_accuracy(kind, target, rate, args.seconds)
                rows.append(
                    [
                        kind,
                        f"{rate:g}",
                        str(n),
                        f"{achieved:.1f}",
                        f"{achieved / rate:.3f}",
                        "ok" if abs(achieved / rate - 1) <= 0.05 else "OFF",
                    ]
                )
        table(
            "1. Limiter accuracy (burst = rate/10, steady state after the burst)",
            ["bucket", "configured/s", "calls", "achieved/s", "ratio", "±5%"],
            rows,
        )

        base = redis_benchmark(server.port)
        piped = redis_benchmark(server.port, pipeline=100)
        rows = []
        for mode, ref in (
            ("get", "get"),
            ("set", "set"),
            ("hit", "get"),
            ("get_many", "get"),
            ("set_many", "set"),
            ("hit-local", "get"),
        ):
            ops = cache_throughput(server.url, mode, args.seconds)
            ratio = ops / base[ref] if base.get(ref) else float("nan")
            label = {
                "get": "get (1 key/round trip)",
                "set": "set (1 key/round trip)",
                "hit": "get_or_compute hit (Lua, counted)",
                "get_many": "get_many (MGET, 100 keys)",
                "set_many": "set_many (pipeline, 100 keys)",
                "hit-local": "get_or_compute hit, repeat key (in-process)",
            }[mode]
            rows.append([label, f"{ops:,.0f}", f"{base.get(ref, float('nan')):,.0f}", f"{ratio:.2f}"])
        table(
            f"2. Cache throughput from {PROCESSES} processes vs redis-benchmark -t get,set "
            f"(50 clients; with -P 100: GET {piped.get('get', 0):,.0f}/s, SET {piped.get('set', 0):,.0f}/s)",
            ["operation", "ops/s", "redis-benchmark ops/s", "ratio"],
            rows,
        )

        if not args.skip_sample:
            times: dict[str, list[float]] = {"emb-cold": [], "emb-warm": [], "redis-cold": [], "redis-warm": []}
            for rep in range(args.repeats):  # alternated, so background load hits both alike
                server.flushall()
                emb_cache = tmp / f"emb-cache-{rep}"
                for name, url, cache in (
                    ("emb-cold", None, emb_cache),
                    ("redis-cold", server.url, tmp / "unused"),
                    ("emb-warm", None, emb_cache),
                    ("redis-warm", server.url, tmp / "unused"),
                ):
                    times[name].append(sample_run(tmp, name, args.latency_ms, url, cache))
            emb_cold, emb_warm, red_cold, red_warm = (
                statistics.median(times[k]) for k in ("emb-cold", "emb-warm", "redis-cold", "redis-warm")
            )
            table(
                f"3. Sample run (3,600 items, 10 workers, SMF_LATENCY_MS={args.latency_ms}; median of {args.repeats})",
                ["cache", "embedded s", "redis s", "redis / embedded"],
                [
                    ["cold", f"{emb_cold:.2f}", f"{red_cold:.2f}", f"{red_cold / emb_cold:.2f}"],
                    ["warm", f"{emb_warm:.2f}", f"{red_warm:.2f}", f"{red_warm / emb_warm:.2f}"],
                ],
            )
    finally:
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
