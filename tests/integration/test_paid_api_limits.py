"""Weighted limits per scope and shared back-pressure, against a real redis-server, the file
limiter of one machine, and a local OpenAI-compatible upstream (tests/fixtures/llm_upstream.py)
standing in for a remote paid API.

The acceptance runs: 4 workers of `dsj run` with the LLM sample generator under a 20k
tokens/min scope keep the upstream's own measured token rate within ±5% of the limit with at
most a handful of 429s; with the scope set above the upstream's limit, shared back-pressure
brings the scope down to it with no failed item and every item generated once.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import threading
import time

import pytest
import redis

from datasetjob.ratelimit import InProcessTokenBucket, Limit, LocalTokenBucket, RedisTokenBucket, scope_step
from datasetjob.ratelimit.base import DECREASE, DEFAULT_PAUSE, RECOVERY_PER_SECOND
from datasetjob.redis_link import forget_links
from datasetjob.sdk.backoff import Throttled, retry_upstream
from datasetjob.sdk.context import Counters, ItemContext, limited
from tests.fixtures.llm_upstream import LLMUpstream

SPAWN = mp.get_context("spawn")
TPM = Limit("tokensPerMinute", "tokens", 600.0, 1000.0, per=60)  # 36k/min: quick tests
RPS = Limit("requestsPerSecond", "requests", 50.0, 5.0)


@pytest.fixture(autouse=True)
def fresh_links():
    forget_links()
    yield
    forget_links()


def limiters(redis_url, tmp_path, scope, limits):
    return [
        RedisTokenBucket(redis_url, scope, limits=limits),
        LocalTokenBucket(tmp_path, scope, limits=limits),
        InProcessTokenBucket(limits=limits),
    ]


# --------------------------------------------------------------------------- the limiter


def test_a_take_weighs_on_every_bucket_and_waits_for_the_slowest(redis_url, tmp_path):
    for bucket in limiters(redis_url, tmp_path, "weighted", [RPS, TPM]):
        first = bucket.take({"requests": 1, "tokens": 900})
        assert first.wait == 0  # both bursts hold it
        second = bucket._decide("take", {"requests": 1, "tokens": 300}, reserve=False)
        # the requests bucket has 4 left; the tokens bucket lacks 200 at 600/s
        assert second.wait == pytest.approx(200 / 600, abs=0.02), type(bucket).__name__
        assert bucket.try_acquire() == 0  # a request alone weighs nothing on the tokens bucket


def test_usage_corrections_refund_and_charge_the_tokens_bucket(redis_url, tmp_path):
    for bucket in limiters(redis_url, tmp_path, "corrected", [TPM]):
        bucket.take({"tokens": 1000})  # the whole burst, estimated
        bucket.correct({"tokens": -600})  # it used 400: 600 back
        assert bucket._decide("take", {"tokens": 550}, reserve=False).wait == 0  # taken: 50 left
        bucket.correct({"tokens": 1200})  # charged beyond the estimate: the queue grows
        wait = bucket._decide("take", {"tokens": 100}, reserve=False).wait
        assert wait == pytest.approx((100 + 1200 - 50) / 600, abs=0.05), type(bucket).__name__


def test_a_weight_above_the_burst_waits_for_its_tokens_then_runs(redis_url, tmp_path):
    for bucket in limiters(redis_url, tmp_path, "big", [Limit("tokensPerMinute", "tokens", 1000.0, 100.0, 60)]):
        reply = bucket._decide("take", {"tokens": 400})  # a reservation: 300 beyond the burst
        assert reply.wait == pytest.approx(0.3, abs=0.02)
        assert bucket._decide("take", {"tokens": 100}, reserve=False).wait == pytest.approx(0.4, abs=0.02)


def test_the_script_and_the_python_step_decide_alike(redis_url):
    """The Lua script mirrors scope_step: the same sequence of operations, the same answers
    (times relative to the first decision, so the clocks do not matter)."""
    limits = [RPS, TPM]
    bucket = RedisTokenBucket(redis_url, "parity", limits=limits)
    ops = [
        ("take", {"requests": 1, "tokens": 700}, None, None),
        ("take", {"requests": 1, "tokens": 700}, None, None),
        ("adjust", {"tokens": -250}, None, None),
        ("throttle", {}, 2.0, None),
        ("take", {"requests": 1, "tokens": 50}, None, None),
        ("throttle", {}, None, 0.0),  # a request sent before the last decrease: no new decrease
        ("peek", {}, None, None),
    ]
    state: dict = {}
    base = None
    for op, weights, retry_after, sent_at in ops:
        if op == "throttle" and sent_at is not None:
            sent_at = 0.0  # long before any decision, on either clock
        theirs = bucket._decide(op, weights, True, retry_after, sent_at)
        base = theirs.slot - theirs.wait if base is None else base
        now = theirs.slot - theirs.wait  # the script's clock for this decision
        ours = scope_step(state, now, limits, op, weights, True, retry_after, sent_at)
        assert ours.wait == pytest.approx(theirs.wait, abs=1e-6), op
        assert ours.factor == pytest.approx(theirs.factor, abs=1e-6), op
        assert ours.paused_until == pytest.approx(theirs.paused_until, abs=1e-6), op
        assert ours.throttles == theirs.throttles, op


def test_a_throttle_pauses_the_scope_and_halves_its_rates_then_they_recover():
    state: dict = {}
    limits = [Limit("tokensPerMinute", "tokens", 100.0, 100.0, 60)]
    scope_step(state, 1000.0, limits, "take", {"tokens": 50})
    reply = scope_step(state, 1000.0, limits, "throttle", {}, retry_after=3.0, sent_at=1000.0)
    assert reply.paused_until == 1003.0 and reply.factor == DECREASE and reply.throttles == 1
    # a second 429 from a request sent before that decrease extends nothing and halves nothing
    again = scope_step(state, 1000.5, limits, "throttle", {}, retry_after=None, sent_at=999.0)
    assert again.factor == DECREASE and again.throttles == 2  # no recovery during the pause
    assert again.paused_until == 1003.0  # 1000.5 + DEFAULT_PAUSE is earlier
    assert DEFAULT_PAUSE < 2.5
    # after the pause the bucket starts empty and refills at the decreased rate
    take = scope_step(state, 1001.0, limits, "take", {"tokens": 10})
    assert take.slot == pytest.approx(1003.0 + 10 / (100.0 * DECREASE), rel=1e-3)
    assert scope_step(state, 1013.0, limits, "peek", {}).factor == pytest.approx(DECREASE + 10 * RECOVERY_PER_SECOND)
    later = scope_step(state, 1100.0, limits, "peek", {})
    assert later.factor == 1.0  # additive recovery back to the configured rates


def test_a_throttle_seen_by_one_pod_makes_every_pod_of_the_scope_wait(redis_url, tmp_path):
    for make in (
        lambda: RedisTokenBucket(redis_url, "paused", limits=[RPS]),
        lambda: LocalTokenBucket(tmp_path, "paused", limits=[RPS]),
    ):
        seer, other = make(), make()
        seer.throttled(retry_after=1.5)
        start = time.monotonic()
        reply = other.take({"requests": 1})
        assert reply.wait >= 1.4 and time.monotonic() - start >= 1.4
        assert other.effective_rates()["requestsPerSecond"] == pytest.approx(50 * DECREASE, rel=0.03)


# --------------------------------------------------------------------------- the SDK


class DictCache:
    def __init__(self):
        self.values = {}

    def get_or_compute(self, key, fn, ttl=None):
        if key not in self.values:
            self.values[key] = fn()
            return self.values[key], False
        return self.values[key], True


def make_ctx(limiter, counters=None):
    return ItemContext(
        item={},
        item_id="x",
        shard="shard-00000",
        index=0,
        run_id="r",
        cache=DictCache(),
        counters=counters or Counters(),
        limiter=limiter,
    )


def level(bucket: RedisTokenBucket, name: str) -> float:
    return float(redis.Redis.from_url(bucket.url).hget(bucket.key, f"t:{name}"))


def test_ctx_limit_takes_the_estimate_and_usage_corrects_it(redis_url):
    bucket = RedisTokenBucket(redis_url, "sdk", limits=[RPS, Limit("tokensPerMinute", "tokens", 1e-3, 5000.0, 60)])
    counters = Counters()
    ctx = make_ctx(bucket, counters)
    with ctx.limit(tokens=1000):
        assert level(bucket, "tokensPerMinute") == pytest.approx(4000, abs=1)
        ctx.usage(tokens=700, cost=0.5)  # inside the block: corrects its estimate
    assert level(bucket, "tokensPerMinute") == pytest.approx(4300, abs=1)
    with ctx.limit(tokens=500):
        pass
    ctx.usage(tokens=800)  # after the block: corrects the last block's estimate
    assert level(bucket, "tokensPerMinute") == pytest.approx(3500, abs=1)
    with ctx.limit(tokens=200):
        pass  # never reported: its estimate counts as its usage

    @ctx.limit(tokens=100)
    def decorated():
        ctx.usage(tokens=50)

    decorated()

    @limited(tokens=lambda n: n)
    def sized(n):
        return n

    assert sized(300) == 300
    assert counters.usage() == {"requests": 5, "tokens": 700 + 800 + 200 + 50 + 300, "cost": 0.5}
    assert level(bucket, "tokensPerMinute") == pytest.approx(3500 - 200 - 50 - 300, abs=1)
    assert counters.rate_limit()["effective"]["requestsPerSecond"] == 50.0


def test_retry_reports_each_throttle_to_the_scope(redis_url):
    bucket = RedisTokenBucket(redis_url, "sdk-retry", limits=[RPS])
    counters = Counters()
    ctx = make_ctx(bucket, counters)
    failures = [Throttled(retry_after=0.2), Throttled(retry_after=0.2)]

    def call():
        if failures:
            raise failures.pop(0)
        return "ok"

    assert ctx.retry(call, base_delay=0.01) == "ok"
    state = counters.rate_limit()
    assert state["throttles"] == 2 and state["scopeThrottles"] == 2
    # the second 429 came from a request sent after the first decrease: halved twice
    assert state["factor"] == pytest.approx(DECREASE**2, abs=0.01)
    assert counters.usage()["requests"] == 3

    # plain retry_upstream inside an item reaches the same scope; a throttle escaping a block too
    with pytest.raises(Throttled):
        retry_upstream(lambda: (_ for _ in ()).throw(Throttled(retry_after=0)), attempts=1)
    with pytest.raises(Throttled), ctx.limit():
        raise Throttled(retry_after=0)
    assert counters.rate_limit()["scopeThrottles"] == 4


# --------------------------------------------------------------------------- through `dsj run`


def texts(count: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    words = ["good", "bad", "fine", "slow", "fast", "broken", "great", "awful", "cheap", "solid", "late", "quiet"]
    return [
        {"id": f"r{i:03d}", "text": " ".join(rng.choice(words) for _ in range(rng.randint(60, 300)))}
        for i in range(count)
    ]


def run_llm_labels(tmp_path, redis_url, upstream, items, tokens_per_minute, workers=4):
    from tests.integration.runs import datasetjob, dsj, write_doc

    doc = datasetjob(
        "llm-labels-test",
        items={"values": items, "idTemplate": "{id}"},
        shards=workers,
        generator={"function": "llm_labels.generate:generate", "concurrency": 2},
        rateLimit={"scope": f"llm-{time.time_ns()}", "tokensPerMinute": tokens_per_minute},
        output={"format": "jsonl"},
        combine={"sortBy": ["id"]},
    )
    proc = dsj(
        "run",
        str(write_doc(doc, tmp_path / "llm.yaml")),
        "--workers",
        str(workers),
        "--output",
        f"file://{tmp_path / 'out'}",
        "--workdir",
        str(tmp_path / "work"),
        "--redis-url",
        redis_url,
        "--quiet",
        cwd=tmp_path,
        env={"OPENAI_BASE_URL": upstream.base_url, "OPENAI_API_KEY": "test", "LLM_MODEL": "test-model"},
        timeout=170,
    )
    return proc


def test_four_workers_keep_the_upstream_within_5_percent_of_the_scope(tmp_path, redis_url):
    limit = 20000
    items = texts(60)
    # the upstream enforces the same limit, with 5 s of burst: overshooting shows as 429s
    with LLMUpstream(tokens_per_minute=limit, burst=limit / 12) as upstream:
        proc = run_llm_labels(tmp_path, redis_url, upstream, items, limit)
        stats = upstream.stats()
        rate = upstream.token_rate(skip_seconds=5)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"\nupstream: {stats['calls']} calls, {stats['tokens']} tokens, {stats['throttled']} x 429, {rate:.0f}/min")
    assert stats["throttled"] <= 3
    assert abs(rate - limit) / limit <= 0.05, rate
    assert sorted(stats["per_item"]) == [item["id"] for item in items]
    assert set(stats["per_item"].values()) == {1}


def test_a_scope_above_the_upstream_limit_converges_under_shared_back_pressure(tmp_path, redis_url):
    upstream_limit = 20000
    items = texts(50, seed=11)
    with LLMUpstream(tokens_per_minute=upstream_limit, burst=upstream_limit / 12) as upstream:
        proc = run_llm_labels(tmp_path, redis_url, upstream, items, 2 * upstream_limit)
        stats = upstream.stats()
        rate = upstream.token_rate(skip_seconds=5)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"\nupstream: {stats['calls']} calls, {stats['tokens']} tokens, {stats['throttled']} x 429, {rate:.0f}/min")
    from tests.integration.runs import published

    dataset, manifest = published(tmp_path / "out")
    assert manifest["items"]["done"] == len(items) and manifest["items"]["failed"] == 0
    # every item generated exactly once: a 429 costs a retry, never a second accepted call
    assert sorted(stats["per_item"]) == [item["id"] for item in items]
    assert set(stats["per_item"].values()) == {1}
    assert stats["throttled"] >= 1  # the scope did run into the upstream's limit
    # back-pressure, not retries alone: far fewer 429s than calls (the throughput it costs is a
    # bench figure, tests/bench/bench_limits.py: a rate depends on the machine's load)
    assert stats["throttled"] <= len(items) // 3


def test_workers_sharing_one_threads_scope_account_every_token(redis_url):
    """Threads of one process under one Redis scope: the tokens taken and corrected add up."""
    bucket = RedisTokenBucket(redis_url, "threads", limits=[Limit("tokensPerMinute", "tokens", 5000.0, 500.0, 60)])
    counters = Counters()
    lock = threading.Lock()
    used = []

    def worker(seed):
        rng = random.Random(seed)
        ctx = make_ctx(bucket, counters)
        for _ in range(20):
            estimate = rng.randint(1, 400)
            actual = max(1, int(estimate * rng.uniform(0.7, 1.3)))
            with ctx.limit(tokens=estimate):
                ctx.usage(tokens=actual)
            with lock:
                used.append(actual)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counters.usage()["tokens"] == sum(used)
    assert counters.usage()["requests"] == 80
