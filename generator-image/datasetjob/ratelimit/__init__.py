"""Rate limiting of upstream calls: a token bucket shared by every worker of a scope.

One algorithm (base), three homes:
  LocalTokenBucket      a small file guarded by flock(): the worker processes of one machine
                        (local mode, no Redis)                                      (local)
  RedisTokenBucket      a Lua script in Redis: every pod of every DatasetJob naming the same
                        scope                                                (redis_bucket)
  InProcessTokenBucket  one process's threads: the conservative per-pod share a worker falls
                        back to when Redis is unreachable                           (local)
`make_limiter` (factory) picks the one for a worker.

The bucket holds at most `burst` tokens and refills at `requests_per_second`, so in any window
of t seconds at most `requests_per_second * t + burst` calls start.

`acquire()` *reserves* the next token: one state update, then the caller sleeps until its
slot. Waiters are served in order and never stampede on the bucket. `try_acquire()` takes a
token only if one is there now and otherwise says how long until one would be.
"""

from __future__ import annotations

from datasetjob.ratelimit.base import TokenBucket, bucket_step
from datasetjob.ratelimit.factory import make_limiter
from datasetjob.ratelimit.local import InProcessTokenBucket, LocalTokenBucket
from datasetjob.ratelimit.redis_bucket import RedisTokenBucket

__all__ = ["TokenBucket", "bucket_step", "make_limiter", "InProcessTokenBucket", "LocalTokenBucket", "RedisTokenBucket"]
