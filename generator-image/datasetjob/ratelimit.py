"""Rate limiting of upstream calls: a token bucket shared by every worker of a scope.

One algorithm, three homes:
  LocalTokenBucket      a small file guarded by flock(): the worker processes of one machine
                        (local mode, no Redis)
  RedisTokenBucket      a Lua script in Redis (redis_ratelimit): every pod of every DatasetJob
                        naming the same scope
  InProcessTokenBucket  one process's threads: the conservative per-pod share a worker falls
                        back to when Redis is unreachable

The bucket holds at most `burst` tokens and refills at `requests_per_second`, so in any window
of t seconds at most `requests_per_second * t + burst` calls start.

`acquire()` *reserves* the next token: one state update, then the caller sleeps until its
slot. Waiters are served in order and never stampede on the bucket. `try_acquire()` takes a
token only if one is there now and otherwise says how long until one would be.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
import time
from pathlib import Path


def bucket_step(tokens: float | None, at: float | None, now: float, rate: float, burst: float,
                reserve: bool) -> tuple[float, float, float]:
    """One decision of the bucket: (tokens, at, wait) after a request at `now`.

    wait == 0: a token was taken. wait > 0 with `reserve`: the token of the slot `at + wait`
    was taken (tokens go below zero: the queue); without `reserve`: nothing was taken.
    A clock that went backwards pauses the refill instead of draining the bucket.
    """
    if tokens is None or at is None:
        tokens, at = float(burst), now
    if now > at:
        tokens = min(float(burst), tokens + (now - at) * rate)
        at = now
    if tokens >= 1:
        return tokens - 1, at, 0.0
    wait = (1 - tokens) / rate
    if reserve:
        return tokens - 1, at, wait
    return tokens, at, wait


class _Bucket:
    """acquire/try_acquire on top of a backend's atomic `_step(reserve) -> (wait, slot time)`."""

    def _step(self, reserve: bool) -> tuple[float, float]:
        raise NotImplementedError

    def try_acquire(self) -> float:
        """0 if a token was taken, else seconds until one will be available."""
        return self._step(reserve=False)[0]

    def acquire(self) -> float:
        """Block until a token is ours; returns the time of its slot (epoch seconds)."""
        wait, at = self._step(reserve=True)
        if wait > 0:
            time.sleep(wait)
        return at + wait


class InProcessTokenBucket(_Bucket):
    """The same bucket for one process's threads."""

    def __init__(self, requests_per_second: float, burst: float):
        self.rate = float(requests_per_second)
        self.burst = max(1.0, float(burst))
        self._tokens: float | None = None
        self._at: float | None = None
        self._lock = threading.Lock()

    def _step(self, reserve: bool) -> tuple[float, float]:
        with self._lock:
            self._tokens, self._at, wait = bucket_step(self._tokens, self._at, time.time(), self.rate,
                                                       self.burst, reserve)
            return wait, self._at



_SCOPE_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class LocalTokenBucket(_Bucket):
    """`requests_per_second` sustained, `burst` at once, across processes on one machine.

    The state {"tokens", "at"} lives in <directory>/ratelimit/<scope>.json, read and rewritten
    under an exclusive flock(); `at` is wall-clock time, the one clock all processes share.
    """

    def __init__(self, directory: str | os.PathLike, scope: str, requests_per_second: float, burst: int):
        if requests_per_second <= 0:
            raise ValueError("requests_per_second must be > 0")
        folder = Path(directory) / "ratelimit"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{_SCOPE_UNSAFE.sub('_', scope)}.json"
        self.rate = float(requests_per_second)
        self.burst = max(1, int(burst))

    def _step(self, reserve: bool) -> tuple[float, float]:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, 4096)
            try:
                state = json.loads(raw) if raw.strip() else {}
                tokens, at = float(state["tokens"]), float(state["at"])
            except (ValueError, KeyError, TypeError):
                tokens = at = None  # new, or torn by a crash mid-write: start with a full bucket
            tokens, at, wait = bucket_step(tokens, at, time.time(), self.rate, self.burst, reserve)
            body = json.dumps({"tokens": tokens, "at": at}).encode()
            # overwrite in place, padded with blanks to the old length (JSON ignores them):
            # the file is never empty or truncated, even if this process dies mid-write
            os.pwrite(fd, body.ljust(len(raw)), 0)
            return wait, at
        finally:
            os.close(fd)  # closing the last descriptor releases the flock



def make_limiter(spec):
    """The bucket of `spec.rateLimit`: in Redis when a Redis is configured, else on local disk
    (shared by the machine's workers), or, in a pod without Redis, the pod's share in-process."""
    from .cache.embedded import default_cache_dir
    from .redis_link import effective_redis_url

    rl = spec.rate_limit
    url = effective_redis_url(spec.cache.redis_url)
    if url:
        from .redis_ratelimit import RedisTokenBucket

        return RedisTokenBucket(url, rl.scope, rl.requests_per_second, rl.burst,
                                parallelism=max(1, min(spec.parallelism, spec.shards)))
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        # a pod without Redis cannot share a bucket with the other pods: take its share
        share = max(1, min(spec.parallelism, spec.shards))
        logging.getLogger("datasetjob.ratelimit").warning(
            "spec.rateLimit without a Redis (spec.cache.redisUrl is empty): this pod limits itself "
            "to requestsPerSecond / parallelism = %.3g requests/s", rl.requests_per_second / share)
        return InProcessTokenBucket(rl.requests_per_second / share, max(1, rl.burst // share))
    directory = os.environ.get("DSJ_EMBEDDED_CACHE_DIR") or default_cache_dir()
    return LocalTokenBucket(directory, rl.scope, rl.requests_per_second, rl.burst)
