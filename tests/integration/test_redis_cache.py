"""RedisCache against a real redis-server: values, keys, TTL, counters, single-flight across
processes, progress, degradation when Redis is unreachable or lost, AUTH."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import time

import pytest
import redis

from datasetjob.cache import CacheValueError
from datasetjob.cache.redis_backend import RedisCache
from datasetjob.progress import FileProgress, read_file_progress, read_redis_progress, redis_progress
from datasetjob.redis_link import forget_links, redact_url, stats_key
from tests.fixtures.services import free_port

SPAWN = mp.get_context("spawn")
WARNING = "shared Redis at"


@pytest.fixture(autouse=True)
def fresh_links(monkeypatch):
    """Each test starts with new connections and the warned-once flag cleared."""
    monkeypatch.delenv("DSJ_REDIS_RECONNECT_SECONDS", raising=False)
    forget_links()
    yield
    forget_links()


def warnings_in(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and WARNING in r.getMessage()]


# --------------------------------------------------------------------------- values and keys

VALUES = [
    "text",
    "ünïcödé 日本語 🚀",
    0,
    -3,
    2**60,
    2.5,
    0.1,
    True,
    None,
    [],
    {},
    [1, "a", [2, [3, {"x": None}]]],
    {"nested": {"list": [1.5, "ß", {"deep": [True]}]}},
]


def test_values_round_trip(redis_url):
    writer = RedisCache(redis_url, namespace="vals", default_ttl=60)
    for i, value in enumerate(VALUES):
        writer.set(f"k{i}", value)
        assert writer.get_or_compute(f"g{i}", lambda v=value: v) == (value, False)
    # another process's view: nothing in its in-process table, every value comes from Redis
    reader = RedisCache(redis_url, namespace="vals", default_ttl=60)
    for i, value in enumerate(VALUES):
        assert reader.get(f"k{i}") == (True, value)
        assert reader.get_or_compute(f"g{i}", lambda: pytest.fail("must be a hit")) == (value, True)
    assert reader.get("absent") == (False, None)
    fresh = RedisCache(redis_url, namespace="vals")
    assert fresh.get_or_compute("k2", lambda: pytest.fail("must be a hit")) == (VALUES[2], True)
    assert fresh.get_many(["k0", "absent", "k1"]) == {"k0": VALUES[0], "k1": VALUES[1]}
    writer.set_many({"m1": {"a": [1]}, "m2": "ü"})
    assert fresh.get_many(["m1", "m2"]) == {"m1": {"a": [1]}, "m2": "ü"}
    writer.close()


def test_hits_return_a_fresh_object_each_time(redis_url):
    cache = RedisCache(redis_url, namespace="vals")
    first, _ = cache.get_or_compute("list", lambda: [1, 2])
    first.append("mutated by a generator")
    assert cache.get_or_compute("list", lambda: None) == ([1, 2], True)


def test_non_json_value_raises_naming_the_key_and_releases_the_lock(redis_url):
    cache = RedisCache(redis_url, namespace="vals")
    with pytest.raises(CacheValueError, match=r"cache key 'bad:1'.*not JSON"):
        cache.set("bad:1", {1, 2})
    with pytest.raises(CacheValueError, match=r"cache key 'bad:2'.*not JSON"):
        cache.get_or_compute("bad:2", lambda: object())
    r = redis.Redis.from_url(redis_url)
    assert r.exists("dsj:cache:vals:bad:2", "dsj:lock:vals:bad:2") == 0
    assert cache.get_or_compute("bad:2", lambda: [1, 2]) == ([1, 2], False)


def test_keys_are_namespaced_with_the_ttl(redis_url):
    r = redis.Redis.from_url(redis_url)
    a = RedisCache(redis_url, namespace="job-a", default_ttl=3600)
    b = RedisCache(redis_url, namespace="job-b", default_ttl=3600)
    a.get_or_compute("prices:AAA", lambda: [1.0, 2.0])
    b.get_or_compute("prices:AAA", lambda: "other")
    a.set("no-ttl", 1, ttl=0)
    assert r.get("dsj:cache:job-a:prices:AAA") == b"[1.0,2.0]"
    assert r.get("dsj:cache:job-b:prices:AAA") == b'"other"'
    assert 3590 < r.ttl("dsj:cache:job-a:prices:AAA") <= 3600
    assert r.ttl("dsj:cache:job-a:no-ttl") == -1
    a.get_or_compute("short", lambda: 1, ttl=1)
    assert r.pttl("dsj:cache:job-a:short") <= 1000
    assert not r.keys("dsj:lock:*")


def read_redis_cache_stats(url: str, namespace: str, run_id: str) -> dict[str, int]:
    raw = redis.Redis.from_url(url).hgetall(stats_key(namespace, run_id))
    raw = {k.decode(): int(v) for k, v in raw.items()}
    return {"hits": raw.get("hits", 0), "misses": raw.get("misses", 0)}


def test_hits_and_misses_are_counted_per_run(redis_url):
    cache = RedisCache(redis_url, namespace="smf", default_ttl=60, run_id="run1")
    other_run = RedisCache(redis_url, namespace="smf", default_ttl=60, run_id="run2")
    for _ in range(3):
        cache.get_or_compute("a", lambda: 1)
    cache.get_or_compute("b", lambda: 2)
    other_run.get_or_compute("a", lambda: 1)
    cache.get_or_compute("b", lambda: 2)  # served in-process, counted at the flush
    cache.close()
    assert read_redis_cache_stats(redis_url, "smf", "run1") == {"hits": 3, "misses": 2}
    assert read_redis_cache_stats(redis_url, "smf", "run2") == {"hits": 1, "misses": 0}
    assert redis.Redis.from_url(redis_url).ttl("dsj:stats:smf:run1") > 0


def test_redis_progress_stores_snapshots_per_shard_and_feeds_the_fallback(redis_url, tmp_path):
    cache = RedisCache(redis_url, namespace="smf", run_id="r1")
    for index in (0, 3):
        sink = redis_progress(
            redis_url, "smf", "r1", index, fallback=FileProgress(tmp_path, index), on_publish=cache.flush_stats
        )
        sink.publish(
            {
                "shard": index,
                "state": "running",
                "items": {"total": 10, "done": index, "failed": 0},
                "cache": {"hits": 1, "misses": 2},
                "rows": index,
            }
        )
    sink.publish(
        {
            "shard": 3,
            "state": "committed",
            "items": {"total": 10, "done": 10, "failed": 0},
            "cache": {"hits": 1, "misses": 2},
            "rows": 10,
        }
    )
    got = read_redis_progress(redis_url, "smf", "r1")
    assert set(got) == {0, 3}
    assert got[3]["state"] == "committed" and got[3]["items"]["done"] == 10 and "updatedAt" in got[3]
    assert got[0]["items"]["done"] == 0
    files = read_file_progress(tmp_path)
    assert files[3]["state"] == "committed" and files[0]["state"] == "running"
    assert redis.Redis.from_url(redis_url).hlen("dsj:progress:smf:r1") == 2
    assert read_redis_progress(redis_url, "smf", "no-such-run") == {}


# --------------------------------------------------------------------------- single-flight


def _ask_same_key(url, namespace, counter_key, barrier, results, compute_seconds):
    cache = RedisCache(url, namespace=namespace, default_ttl=60)
    counter = redis.Redis.from_url(url)

    def upstream():
        counter.incr(counter_key)
        time.sleep(compute_seconds)
        return {"price": 101.5, "by": os.getpid()}

    barrier.wait()
    value, hit = cache.get_or_compute("prices:SAME", upstream)
    results.put((value, hit))


def test_ten_processes_missing_the_same_key_make_one_upstream_call(redis_url):
    n = 10
    barrier = SPAWN.Barrier(n)
    results = SPAWN.Queue()
    procs = [
        SPAWN.Process(target=_ask_same_key, args=(redis_url, "sf", "upstream-calls", barrier, results, 0.5))
        for _ in range(n)
    ]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in range(n)]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert int(redis.Redis.from_url(redis_url).get("upstream-calls")) == 1
    assert len({repr(v) for v, _ in got}) == 1
    assert sorted(hit for _, hit in got) == [False] + [True] * (n - 1)


def _hold_forever(url, started):
    cache = RedisCache(url, namespace="sf", lock_ms=600)

    def stuck():
        started.set()
        time.sleep(3600)

    cache.get_or_compute("k", stuck)


def test_a_killed_holder_lock_expires_and_a_waiter_computes(redis_url):
    started = SPAWN.Event()
    holder = SPAWN.Process(target=_hold_forever, args=(redis_url, started))
    holder.start()
    try:
        assert started.wait(60)
        r = redis.Redis.from_url(redis_url)
        assert r.exists("dsj:lock:sf:k")
        time.sleep(0.5)  # longer than one renewal period: the holder keeps its lock alive
        assert r.exists("dsj:lock:sf:k")
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(30)
        calls = []
        cache = RedisCache(redis_url, namespace="sf")
        assert cache.get_or_compute("k", lambda: calls.append(1) or "fresh") == ("fresh", False)
        assert calls == [1]
    finally:
        if holder.is_alive():
            os.kill(holder.pid, signal.SIGKILL)
            holder.join(30)


def _slow_holder(url, started, lock_ms, seconds):
    cache = RedisCache(url, namespace="sf", lock_ms=lock_ms)
    counter = redis.Redis.from_url(url)

    def slow():
        counter.incr("slow-calls")
        started.set()
        time.sleep(seconds)
        return "slow value"

    cache.get_or_compute("slow", slow)


def test_the_holder_renews_its_lock_while_computing(redis_url):
    """A computation far longer than the lock's lifetime still makes one upstream call."""
    started = SPAWN.Event()
    holder = SPAWN.Process(target=_slow_holder, args=(redis_url, started, 300, 2.0))
    holder.start()
    assert started.wait(60)
    cache = RedisCache(redis_url, namespace="sf", lock_ms=300)
    counter = redis.Redis.from_url(redis_url)

    def duplicate():
        counter.incr("slow-calls")
        return "duplicate"

    assert cache.get_or_compute("slow", duplicate) == ("slow value", True)
    holder.join(30)
    assert int(counter.get("slow-calls")) == 1


def test_a_failing_holder_lets_the_next_caller_compute(redis_url):
    cache = RedisCache(redis_url, namespace="sf")

    def boom():
        raise ConnectionError("upstream 502")

    with pytest.raises(ConnectionError):
        cache.get_or_compute("flaky", boom)
    assert not redis.Redis.from_url(redis_url).exists("dsj:lock:sf:flaky")
    assert cache.get_or_compute("flaky", lambda: 7) == (7, False)


def test_a_waiter_gives_up_after_the_timeout_and_computes(redis_url):
    r = redis.Redis.from_url(redis_url)
    r.set("dsj:lock:sf:stuck", "someone-else", px=60_000)
    cache = RedisCache(redis_url, namespace="sf", wait_timeout=0.3)
    assert cache.get_or_compute("stuck", lambda: "mine") == ("mine", False)
    assert cache.get("stuck") == (True, "mine")


# --------------------------------------------------------------------------- degradation


def test_unreachable_redis_at_start_degrades_with_one_warning(caplog):
    url = f"redis://127.0.0.1:{free_port()}/0"
    caplog.set_level(logging.INFO, logger="datasetjob")
    cache = RedisCache(url, namespace="down", run_id="r")
    calls = []
    for i in range(20):
        assert cache.get_or_compute(f"k{i}", lambda i=i: calls.append(i) or i) == (i, False)
    assert len(calls) == 20  # computed directly, counted as misses
    assert cache.get_or_compute("k3", lambda: pytest.fail("repeat")) == (3, True)  # in-process table
    assert cache.get("never") == (False, None)
    cache.set("k0", 1)
    with pytest.raises(CacheValueError, match="'bad'"):  # same contract without Redis
        cache.get_or_compute("bad", lambda: {1})
    redis_progress(url, "down", "r", 0, on_publish=cache.flush_stats).publish({"items": {}})
    warned = warnings_in(caplog)
    assert len(warned) == 1, warned
    assert url in warned[0] and "counted as misses" in warned[0]


def test_redis_lost_mid_run_degrades_once_and_comes_back(redis_server_factory, caplog, monkeypatch):
    server = redis_server_factory()
    caplog.set_level(logging.INFO, logger="datasetjob")
    monkeypatch.setenv("DSJ_REDIS_RECONNECT_SECONDS", "0.5")
    cache = RedisCache(server.url, namespace="lost", run_id="r")
    assert cache.get_or_compute("a", lambda: 1) == (1, False)
    assert cache.get_or_compute("a", lambda: 2) == (1, True)

    server.kill()
    for i in range(10):
        assert cache.get_or_compute(f"b{i}", lambda: "direct") == ("direct", False)
    assert cache.get_or_compute("a", lambda: 3) == (1, True)  # read before: in-process table
    time.sleep(0.6)
    assert cache.get_or_compute("c", lambda: "direct") == ("direct", False)  # still down: retried quietly
    assert len(warnings_in(caplog)) == 1

    server.start()
    time.sleep(0.6)
    assert cache.get_or_compute("d", lambda: "again") == ("again", False)
    assert server.client().get("dsj:cache:lost:d") == b'"again"'
    assert RedisCache(server.url, namespace="lost").get_or_compute("d", lambda: "x") == ("again", True)
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert len(warnings_in(caplog)) == 1


# --------------------------------------------------------------------------- AUTH


def test_password_url_works(redis_server_factory, caplog):
    server = redis_server_factory(password="s3cret pw/with:chars".replace(" ", "-").replace("/", "_"))
    caplog.set_level(logging.WARNING, logger="datasetjob")
    assert server.url.startswith("redis://:")
    cache = RedisCache(server.url, namespace="auth", run_id="r")
    assert cache.get_or_compute("k", lambda: {"v": 1}) == ({"v": 1}, False)
    assert cache.get_or_compute("k", lambda: None) == ({"v": 1}, True)
    assert server.client().get("dsj:cache:auth:k") == b'{"v":1}'
    assert warnings_in(caplog) == []


@pytest.mark.parametrize("which", ["wrong", "missing"])
def test_wrong_or_missing_password_degrades_with_the_warning(redis_server_factory, caplog, which):
    server = redis_server_factory(password="right-password")
    url = f"redis://:wrong-password@{server.host}:{server.port}/0" if which == "wrong" else server.url_without_password
    caplog.set_level(logging.WARNING, logger="datasetjob")
    cache = RedisCache(url, namespace="auth")
    assert cache.get_or_compute("k", lambda: 1) == (1, False)
    assert cache.get_or_compute("k2", lambda: 2) == (2, False)
    assert not server.client().keys("*")
    warned = warnings_in(caplog)
    assert len(warned) == 1, warned
    assert "wrong-password" not in warned[0] and "right-password" not in warned[0]
    assert "Auth" in warned[0] or "auth" in warned[0].lower()


def test_redact_url_hides_only_the_password():
    assert redact_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("rediss://user:pw@h:6380/1?ssl_cert_reqs=none") == "rediss://user:***@h:6380/1?ssl_cert_reqs=none"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"


def test_a_url_that_is_not_redis_is_a_config_error(monkeypatch):
    from datasetjob.cache.factory import make_cache
    from datasetjob.errors import GeneratorConfigError
    from datasetjob.spec.model import spec_from_document
    from tests.integration.runs import sample_doc

    monkeypatch.setenv("DSJ_REDIS_URL", "http://cache.example:6379")
    with pytest.raises(GeneratorConfigError, match="spec.cache.redisUrl"):
        make_cache(spec_from_document(sample_doc()), "run")
