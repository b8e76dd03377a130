"""Rate limiting of upstream calls: a token bucket shared by every worker of a scope.

Local mode: the bucket lives in a small file guarded by flock(), shared by the machine's
worker processes. (The Redis-backed bucket for clusters lives in redis_ratelimit.)
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path


class LocalTokenBucket:
    """`requests_per_second` sustained, `burst` at once, across processes on one machine."""

    def __init__(self, directory: str | os.PathLike, scope: str, requests_per_second: float, burst: int):
        folder = Path(directory) / "ratelimit"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{scope}.json"
        self.rate = float(requests_per_second)
        self.burst = int(burst)

    def try_acquire(self) -> float:
        """0 if a token was taken, else seconds until one will be available."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, 4096)
            now = time.time()
            state = json.loads(raw) if raw.strip() else {"tokens": self.burst, "at": now}
            tokens = min(self.burst, state["tokens"] + (now - state["at"]) * self.rate)
            if tokens >= 1:
                tokens -= 1
                wait = 0.0
            else:
                wait = (1 - tokens) / self.rate
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"tokens": tokens, "at": now}).encode())
            return wait
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def acquire(self) -> None:
        while (wait := self.try_acquire()) > 0:
            time.sleep(wait)


def make_limiter(spec):
    from .cache.embedded import default_cache_dir
    from .cache.factory import effective_redis_url

    rl = spec.rate_limit
    url = effective_redis_url(spec.cache.redis_url)
    if url:
        from .redis_ratelimit import RedisTokenBucket

        return RedisTokenBucket(url, rl.scope, rl.requests_per_second, rl.burst,
                                parallelism=spec.parallelism)
    directory = os.environ.get("DSJ_CACHE_DIR") or default_cache_dir()
    return LocalTokenBucket(directory, rl.scope, rl.requests_per_second, rl.burst)
