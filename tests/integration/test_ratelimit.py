"""The token buckets under contention from real processes, the per-pod fallback without Redis,
and the SDK helpers (ctx.limit / limited / retry with full jitter).

The window property: for timestamps t_1 <= ... <= t_n, every run t_i..t_j satisfies
    j - i + 1 <= rate * (t_j - t_i) + burst.
It is checked exactly on the slots the bucket granted (its own clock: Redis TIME, or the
wall clock for the file bucket). On the times callers observed after acquire() returned it
holds up to one extra call per process: a caller records late (never early), and a process
holds at most one granted-but-unrecorded token at a time.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
import time

import pytest
import redis

from datasetjob.ratelimit import InProcessTokenBucket, LocalTokenBucket, RedisTokenBucket, bucket_step
from datasetjob.redis_link import forget_links
from datasetjob.sdk.backoff import Throttled, is_throttled, retry_upstream
from datasetjob.sdk.context import Counters, ItemContext, limited
from tests.fixtures.services import free_port

SPAWN = mp.get_context("spawn")
PROCESSES, CALLS, RATE, BURST = 8, 200, 50.0, 10


@pytest.fixture(autouse=True)
def fresh_links():
    forget_links()
    yield
    forget_links()


def max_excess(times: list[float], rate: float) -> float:
    """max over i <= j of (j - i + 1) - rate * (t_j - t_i): the tightest burst the times allow."""
    times = sorted(times)
    times = [t - times[0] for t in times]  # small numbers: rate * t stays exact to ~1e-9
    best = float("-inf")
    low = float("inf")  # min over i <= j of (i - rate * t_i)
    for j, t in enumerate(times):
        low = min(low, j - rate * t)
        best = max(best, (j - rate * t) - low + 1)
    return best


def test_max_excess_matches_a_brute_force_count():
    times = [0.0, 0.0, 0.01, 0.5, 0.52, 0.53, 2.0]
    brute = max(j - i + 1 - 2.0 * (times[j] - times[i]) for i in range(len(times)) for j in range(i, len(times)))
    assert max_excess(times, 2.0) == pytest.approx(brute)


def _hammer(kind, target, scope, barrier, out):
    if kind == "redis":
        bucket = RedisTokenBucket(target, scope, RATE, BURST, parallelism=PROCESSES)
    else:
        bucket = LocalTokenBucket(target, scope, RATE, BURST)
    slots, seen = [], []
    barrier.wait()
    for _ in range(CALLS):
        slots.append(bucket.acquire())
        seen.append(time.time())
    out.put((slots, seen))


def run_processes(kind, target, scope):
    barrier = SPAWN.Barrier(PROCESSES)
    out = SPAWN.Queue()
    procs = [SPAWN.Process(target=_hammer, args=(kind, target, scope, barrier, out)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    slots = [t for s, _ in results for t in s]
    seen = [t for _, s in results for t in s]
    return slots, seen


def check_window_property(slots, seen):
    assert len(slots) == PROCESSES * CALLS
    # slots are exact up to float rounding of epoch seconds (~2.4e-7 s, i.e. ~1e-5 tokens)
    assert max_excess(slots, RATE) <= BURST + 1e-3
    assert max_excess(seen, RATE) <= BURST + PROCESSES
    span = max(slots) - min(slots)
    achieved = (len(slots) - BURST) / span
    assert 0.8 * RATE <= achieved <= RATE * 1.001, achieved


def test_redis_bucket_shared_by_8_processes_never_exceeds_rate_t_plus_burst(redis_url):
    slots, seen = run_processes("redis", redis_url, "contended-api")
    check_window_property(slots, seen)
    assert redis.Redis.from_url(redis_url).exists("dsj:ratelimit:contended-api")


def test_file_bucket_shared_by_8_processes_never_exceeds_rate_t_plus_burst(tmp_path):
    slots, seen = run_processes("file", str(tmp_path), "contended-api")
    check_window_property(slots, seen)


def test_try_acquire_takes_the_burst_then_reports_the_wait(redis_url, tmp_path):
    for bucket in (
        RedisTokenBucket(redis_url, "try", 2.0, 3),
        LocalTokenBucket(tmp_path, "try", 2.0, 3),
        InProcessTokenBucket(2.0, 3),
    ):
        assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
        waits = [bucket.try_acquire() for _ in range(3)]
        assert all(0 < w <= 0.5 for w in waits)  # nothing reserved: the wait does not grow
        assert max(waits) - min(waits) < 0.1


def test_scopes_are_separate_and_shared_by_name(redis_url):
    a1 = RedisTokenBucket(redis_url, "scope-a", 1.0, 2)
    a2 = RedisTokenBucket(redis_url, "scope-a", 1.0, 2)  # another DatasetJob, same scope
    b = RedisTokenBucket(redis_url, "scope-b", 1.0, 2)
    assert a1.try_acquire() == 0 and a2.try_acquire() == 0
    assert a1.try_acquire() > 0 and a2.try_acquire() > 0
    assert b.try_acquire() == 0


def test_the_bucket_uses_the_redis_clock(redis_url):
    """Slots come from Redis TIME: they match the server's clock, not a client's."""
    bucket = RedisTokenBucket(redis_url, "clock", 1000.0, 5)

    def server_time() -> float:
        seconds, micros = redis.Redis.from_url(redis_url).time()
        return seconds + micros / 1e6

    server_before = server_time()
    slot = bucket.acquire()
    server_after = server_time()
    assert server_before <= slot <= server_after


def test_a_corrupt_state_file_starts_a_fresh_bucket(tmp_path):
    bucket = LocalTokenBucket(tmp_path, "api/with:odd chars", 10.0, 2)
    bucket.path.write_text('{"tokens": 1.5, "at": 17')  # torn write
    assert bucket.try_acquire() == 0.0
    assert bucket.path.parent == tmp_path / "ratelimit" and "/" not in bucket.path.name


def test_a_clock_step_back_pauses_the_refill_instead_of_draining():
    tokens, at, wait = bucket_step(0.0, 1000.0, 400.0, rate=10.0, burst=5, reserve=False)
    assert (tokens, at) == (0.0, 1000.0) and wait == pytest.approx(0.1)
    tokens, at, wait = bucket_step(0.0, 1000.0, 1000.5, rate=10.0, burst=5, reserve=False)
    assert wait == 0 and tokens == pytest.approx(4.0)


def test_reservations_queue_at_exact_intervals():
    tokens, at, slots = 1.0, 0.0, []
    for _ in range(5):
        tokens, at, wait = bucket_step(tokens, at, 0.0, rate=4.0, burst=1, reserve=True)
        slots.append(at + wait)
    assert slots == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


# --------------------------------------------------------------------------- without Redis


def test_unreachable_redis_falls_back_to_the_per_pod_share(caplog):
    caplog.set_level(logging.WARNING, logger="datasetjob")
    bucket = RedisTokenBucket(f"redis://127.0.0.1:{free_port()}/0", "down", 100.0, 8, parallelism=4)
    assert bucket.degraded
    assert bucket.fallback.rate == 25.0 and bucket.fallback.burst == 2
    slots = [bucket.acquire() for _ in range(20)]
    assert max_excess(slots, 25.0) <= 2 + 1e-3
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert "rate limits fall back" in caplog.records[0].getMessage()


def test_redis_lost_mid_run_falls_back_then_recovers(redis_server_factory, monkeypatch):
    monkeypatch.setenv("DSJ_REDIS_RECONNECT_SECONDS", "0.3")
    server = redis_server_factory()
    bucket = RedisTokenBucket(server.url, "lost", 1000.0, 50, parallelism=10)
    bucket.acquire()
    assert not bucket.degraded
    server.kill()
    bucket.acquire()
    assert bucket.degraded
    server.start()
    time.sleep(0.4)
    bucket.acquire()
    assert not bucket.degraded
    assert server.client().exists("dsj:ratelimit:lost")


# --------------------------------------------------------------------------- SDK helpers


class CountingLimiter:
    def __init__(self):
        self.tokens = 0
        self.lock = threading.Lock()

    def acquire(self):
        with self.lock:
            self.tokens += 1


class DictCache:
    def __init__(self):
        self.values = {}

    def get_or_compute(self, key, fn, ttl=None):
        if key in self.values:
            return self.values[key], True
        self.values[key] = fn()
        return self.values[key], False


def make_ctx(limiter, cache=None):
    return ItemContext(
        item={},
        item_id="x",
        shard="shard-00000",
        index=0,
        run_id="r",
        cache=cache or DictCache(),
        counters=Counters(),
        limiter=limiter,
    )


def test_limit_decorators_take_one_token_per_call_without_stacking():
    limiter = CountingLimiter()
    ctx = make_ctx(limiter)

    @limited
    def api(x):
        return x * 2

    get = ctx.limited(lambda x: x + 1)
    assert api(2) == 4 and get(1) == 2
    assert limiter.tokens == 2
    with ctx.limit():
        api(1)
        get(1)
    assert limiter.tokens == 3  # one block, one token
    assert ctx.cached("k", lambda: api(5)) == 10
    assert ctx.cached("k", lambda: api(5)) == 10  # hit: no token
    assert limiter.tokens == 4
    assert ctx._counters.upstream_calls == 4
    assert (ctx._counters.cache_hits, ctx._counters.cache_misses) == (1, 1)


class HTTPError(Exception):
    def __init__(self, status, headers=None):
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.headers = headers or {}


class Response:
    def __init__(self, status, headers=None):
        self.status_code = status
        self.headers = headers or {}


class RequestsStyleError(Exception):
    def __init__(self, status, headers=None):
        super().__init__(f"{status} error")
        self.response = Response(status, headers)


def test_retry_backs_off_with_full_jitter_on_429_and_503():
    failures = [HTTPError(429), RequestsStyleError(503), HTTPError(429), HTTPError(503)]
    sleeps = []

    def call():
        if failures:
            raise failures.pop(0)
        return "ok"

    assert retry_upstream(call, attempts=5, base_delay=1.0, max_delay=3.0, sleep=sleeps.append) == "ok"
    assert len(sleeps) == 4
    for k, delay in enumerate(sleeps):
        assert 0 <= delay <= min(3.0, 1.0 * 2**k)


def test_retry_honours_retry_after_and_gives_up():
    sleeps = []
    with pytest.raises(HTTPError):
        retry_upstream(
            lambda: (_ for _ in ()).throw(HTTPError(429, {"Retry-After": "2"})),
            attempts=3,
            base_delay=0.01,
            sleep=sleeps.append,
        )
    assert sleeps == [2.0, 2.0]
    sleeps.clear()
    with pytest.raises(Throttled):
        retry_upstream(
            lambda: (_ for _ in ()).throw(Throttled(retry_after=100)), attempts=2, max_delay=5, sleep=sleeps.append
        )
    assert sleeps == [5]


def test_retry_does_not_retry_other_errors():
    calls = []

    def call():
        calls.append(1)
        raise HTTPError(404)

    with pytest.raises(HTTPError):
        retry_upstream(call, sleep=lambda s: None)
    assert calls == [1]
    assert is_throttled(HTTPError(429)) and is_throttled(RequestsStyleError(503))
    assert not is_throttled(HTTPError(500)) and not is_throttled(ValueError("429"))


def test_ctx_retry_takes_a_new_token_per_retry():
    limiter = CountingLimiter()
    ctx = make_ctx(limiter)
    failures = [HTTPError(429), HTTPError(429)]

    def call():
        if failures:
            raise failures.pop(0)
        return 42

    assert ctx.cached("k", lambda: ctx.retry(call, base_delay=0.001)) == 42
    assert limiter.tokens == 3  # the miss's token, then one per retry
    assert ctx.retry(lambda: 1) == 1
    assert limiter.tokens == 4  # standalone: the first call takes its own token


# --------------------------------------------------------------------------- through `dsj run`

RATED_GENERATOR = """
import os
import time


def call(item, ctx):
    with ctx.limit():
        with open(os.environ["CALLS_FILE"], "a") as f:
            f.write(f"{time.time()!r}\\n")
    return {"symbol": item["symbol"], "date": item["date"], "shard": ctx.shard}
"""


@pytest.mark.parametrize("bucket", ["redis", "file"])
def test_workers_of_a_run_share_the_spec_rate_limit(tmp_path, redis_url, bucket):
    from tests.integration.runs import dsj, published, sample_doc, write_doc

    (tmp_path / "ratedgen.py").write_text(RATED_GENERATOR)
    doc = sample_doc(symbols=12, dates=10, shards=4)
    doc["spec"]["generator"] = {"function": "ratedgen:call", "concurrency": 4}
    doc["spec"]["rateLimit"] = {"requestsPerSecond": 20, "burst": 5, "scope": f"rated-{bucket}"}
    del doc["spec"]["combine"]["columns"]
    calls = tmp_path / "calls.txt"
    extra = ["--redis-url", redis_url] if bucket == "redis" else []
    proc = dsj(
        "run",
        str(write_doc(doc, tmp_path / "rated.yaml")),
        "--output",
        f"file://{tmp_path / 'out'}",
        "--workdir",
        str(tmp_path / "work"),
        "--cache-dir",
        str(tmp_path / "cache"),
        *extra,
        cwd=tmp_path,
        env={"CALLS_FILE": str(calls)},
    )
    assert proc.returncode == 0, proc.stderr
    _, manifest = published(tmp_path / "out")
    assert manifest["items"]["done"] == 120
    times = [float(line) for line in calls.read_text().split()]
    assert len(times) == 120
    threads = 4 * 4  # each holds at most one granted-but-unrecorded token
    assert max_excess(times, 20.0) <= 5 + threads
    if bucket == "file":
        assert (tmp_path / "cache" / "ratelimit" / "rated-file.json").exists()


def _spec(**rate_limit):
    from datasetjob.spec.model import spec_from_document
    from tests.integration.runs import sample_doc

    doc = sample_doc(shards=4)
    doc["spec"]["parallelism"] = 2
    doc["spec"]["rateLimit"] = {"requestsPerSecond": 10, "burst": 4, "scope": "s", **rate_limit}
    return spec_from_document(doc)


def test_make_limiter_picks_the_bucket_for_the_mode(redis_url, tmp_path, monkeypatch):
    from datasetjob.ratelimit import make_limiter

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("DSJ_EMBEDDED_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("DSJ_REDIS_URL", raising=False)
    assert isinstance(make_limiter(_spec()), LocalTokenBucket)
    monkeypatch.setenv("DSJ_REDIS_URL", redis_url)
    limiter = make_limiter(_spec())
    assert isinstance(limiter, RedisTokenBucket) and limiter.key == "dsj:ratelimit:s"
    assert limiter.fallback.rate == 5.0 and limiter.fallback.burst == 2  # parallelism 2
    monkeypatch.delenv("DSJ_REDIS_URL")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")  # a pod without Redis: its share
    limiter = make_limiter(_spec())
    assert isinstance(limiter, InProcessTokenBucket) and limiter.rate == 5.0
