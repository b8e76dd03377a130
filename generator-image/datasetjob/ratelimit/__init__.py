"""Rate limiting of upstream calls: the limits of a scope, shared by every worker naming it.

One algorithm (base), three homes:
  LocalTokenBucket      a small file guarded by flock(): the worker processes of one machine
                        (local mode, no Redis)                                      (local)
  RedisTokenBucket      a Lua script in Redis: every pod of every DatasetJob naming the same
                        scope                                                (redis_bucket)
  InProcessTokenBucket  one process's threads: the conservative per-pod share a worker falls
                        back to when Redis is unreachable                           (local)
`make_limiter` (factory) picks the one for a worker.

A scope has one bucket per limit (requests per second or minute, tokens per minute). Each
bucket holds at most `burst` units and refills at its rate, so in any window of t seconds at
most `rate * t + burst` units are taken from it. A take weighs on every bucket at once (one
request, and the call's estimated tokens) in one atomic step; after the call the actual
usage corrects the token bucket (`correct`).

`take()` *reserves*: one state update, then the caller sleeps until its slot. Waiters are
served in order and never stampede on the buckets. `try_acquire()` takes a request only if
one is there now and otherwise says how long until one would be.

Shared back-pressure: `throttled()` (a 429/503 seen by any worker) pauses the whole scope for
the Retry-After and halves its rates, which then recover additively (AIMD, see base).
"""

from __future__ import annotations

from datasetjob.ratelimit.base import Limit, Reply, TokenBucket, bucket_step, scope_step
from datasetjob.ratelimit.factory import make_limiter, spec_limits
from datasetjob.ratelimit.local import InProcessTokenBucket, LocalTokenBucket
from datasetjob.ratelimit.redis_bucket import RedisTokenBucket

__all__ = [
    "InProcessTokenBucket",
    "Limit",
    "LocalTokenBucket",
    "RedisTokenBucket",
    "Reply",
    "TokenBucket",
    "bucket_step",
    "make_limiter",
    "scope_step",
    "spec_limits",
]
