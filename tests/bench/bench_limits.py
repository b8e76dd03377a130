"""Paid-API limits benchmark: weighted limiter accuracy, and what back-pressure costs.

Starts its own redis-server and a local OpenAI-compatible upstream (tests/fixtures/llm_upstream.py)
and prints:
  1. Limiter accuracy: 4 processes sharing one Redis scope of 10,000 tokens/min take weights
     uniform in 1..4,000 (estimates off by up to ±30%, corrected by the actual usage after each
     call) for --seconds (default 60). Accuracy = actual tokens granted after the first take /
     the time between the first and the last take, against the limit (goal: within ±2%).
  2. Back-pressure: 4 processes call the upstream (limited to --upstream-tpm) through ctx.retry,
     once under a scope set to the upstream's limit and once under a scope set to twice it;
     the second finds the limit through 429s and shared back-pressure. Printed: the tokens/min
     the upstream accepted, its 429s, and the throughput lost against the correctly set limit.
Usage: python tests/bench/bench_limits.py [--seconds 60] [--upstream-tpm 20000] [--skip-accuracy]
Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
CTX = mp.get_context("spawn")
PROCESSES = 4


# --------------------------------------------------------------------------- 1. accuracy


def _weighted_worker(url, scope, tpm, seconds, seed, barrier, out):
    from datasetjob.ratelimit import Limit, RedisTokenBucket

    bucket = RedisTokenBucket(url, scope, limits=[Limit("tokensPerMinute", "tokens", tpm / 60, tpm / 60, 60)])
    rng = random.Random(seed)
    taken = []
    barrier.wait()
    end = time.time() + seconds
    while True:
        actual = rng.randint(1, 4000)
        estimate = max(1, round(actual * rng.uniform(0.7, 1.3)))
        reply = bucket.take({"tokens": estimate})
        if time.time() > end:
            bucket.correct({"tokens": -estimate})  # not made: the run is over
            break
        bucket.correct({"tokens": actual - estimate})
        taken.append((reply.slot, actual, estimate))
    out.put(taken)


def accuracy(url: str, tpm: float, seconds: float) -> None:
    barrier, out = CTX.Barrier(PROCESSES), CTX.Queue()
    scope = f"bench-weighted-{time.time_ns()}"
    procs = [
        CTX.Process(target=_weighted_worker, args=(url, scope, tpm, seconds, seed, barrier, out))
        for seed in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    takes = sorted(t for _ in procs for t in out.get(timeout=seconds + 300))
    for p in procs:
        p.join()
    span = takes[-1][0] - takes[0][0]
    # what the limiter granted after the first slot: each take's estimate, and the corrections of
    # the takes before the last (each lands right after its slot, before the last one's)
    granted = sum(e for _, _, e in takes[1:]) + sum(a - e for _, a, e in takes[:-1])
    rate = granted / span * 60
    used = sum(a for _, a, _ in takes[1:]) / span * 60
    print(
        f"  {len(takes)} takes of 1..4000 tokens over {span:.1f} s: granted {rate:,.0f} tokens/min against "
        f"{tpm:,.0f} ({(rate / tpm - 1) * 100:+.2f}%; goal within ±2%); actual tokens of the takes after "
        f"the first {used:,.0f}/min (the last take's own correction falls outside the window)"
    )


# --------------------------------------------------------------------------- 2. back-pressure


def _caller(url, scope, scope_tpm, base_url, seconds, seed, barrier, out):
    import json
    import urllib.error
    import urllib.request

    from datasetjob.ratelimit import Limit, RedisTokenBucket
    from datasetjob.sdk.context import Counters, ItemContext

    bucket = RedisTokenBucket(
        url, scope, limits=[Limit("tokensPerMinute", "tokens", scope_tpm / 60, scope_tpm / 60, 60)]
    )
    counters = Counters()
    rng = random.Random(seed)
    barrier.wait()
    end = time.time() + seconds
    n = 0
    while time.time() < end:
        n += 1
        text = "word " * rng.randint(100, 700)
        messages = [{"role": "user", "content": f"[id={seed}-{n}] {text}"}]
        estimate = len(messages[0]["content"]) // 4 + 4 + 8
        ctx = ItemContext(
            item=None, item_id=f"{seed}-{n}", shard="bench", index=0, run_id="b", cache=None, counters=counters,
            limiter=bucket,
        )  # fmt: skip

        def call():
            body = json.dumps({"model": "m", "messages": messages, "max_tokens": 8}).encode()
            request = urllib.request.Request(f"{base_url}/chat/completions", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())

        with ctx.limit(tokens=estimate):
            try:
                answer = ctx.retry(call, attempts=10, max_delay=30)
            except urllib.error.HTTPError:
                continue
            ctx.usage(tokens=answer["usage"]["total_tokens"])
    out.put(counters.rate_limit())


def back_pressure(url: str, upstream_tpm: float, seconds: float) -> None:
    from tests.fixtures.llm_upstream import LLMUpstream

    results = {}
    for label, scope_tpm in (
        ("scope = the upstream's limit", upstream_tpm),
        ("scope = 2x the limit", 2 * upstream_tpm),
    ):
        with LLMUpstream(tokens_per_minute=upstream_tpm, burst=upstream_tpm / 12, latency=0.05) as upstream:
            barrier, out = CTX.Barrier(PROCESSES), CTX.Queue()
            scope = f"bench-bp-{time.time_ns()}"
            procs = [
                CTX.Process(target=_caller, args=(url, scope, scope_tpm, upstream.base_url, seconds, s, barrier, out))
                for s in range(PROCESSES)
            ]
            for p in procs:
                p.start()
            states = [out.get(timeout=seconds + 300) for _ in procs]
            for p in procs:
                p.join()
            stats = upstream.stats()
            rate = upstream.token_rate(skip_seconds=5)
        results[label] = rate
        factor = min((s or {}).get("factor", 1.0) for s in states)
        print(
            f"  {label:<30} upstream accepted {rate:,.0f} tokens/min ({rate / upstream_tpm * 100:.1f}% of its "
            f"limit), {stats['throttled']} x 429 in {stats['calls']} calls; final factor {factor:.2f}"
        )
    correct, high = results.values()
    print(f"  throughput lost to back-pressure against a correctly set limit: {(1 - high / correct) * 100:.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--upstream-tpm", type=float, default=20000)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-back-pressure", action="store_true")
    args = parser.parse_args()
    from tests.fixtures.services import RedisServer

    server = RedisServer().start()
    try:
        if not args.skip_accuracy:
            print(f"1. weighted limiter accuracy (Redis scope, {PROCESSES} processes, 10,000 tokens/min)")
            accuracy(server.url, 10000, args.seconds)
        if args.skip_back_pressure:
            return
        print(f"2. shared back-pressure ({PROCESSES} processes, upstream at {args.upstream_tpm:,.0f} tokens/min)")
        back_pressure(server.url, args.upstream_tpm, args.seconds)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
