"""`ctx`: what a generator function gets beside its item."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Counters:
    """Per-shard tallies, shared by the worker's threads."""

    cache_hits: int = 0
    cache_misses: int = 0
    upstream_calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)


class ItemContext:
    """Passed as `ctx` to `fn(item, ctx)`.

    ctx.cached(key, fn, ttl=None)  get-or-compute in the shared cache (misses go through the
                                   rate limiter when one is configured)
    ctx.limit()                    context manager: take one token of the shared rate limit
    ctx.log                        a logger; lines carry the shard and item id
    ctx.item_id, ctx.shard, ctx.index, ctx.run_id
    """

    def __init__(self, *, item: Any, item_id: str, shard: str, index: int, run_id: str,
                 cache, counters: Counters, limiter=None, default_ttl: int | None = None,
                 logger: logging.Logger | None = None):
        self.item = item
        self.item_id = item_id
        self.shard = shard
        self.index = index
        self.run_id = run_id
        self._cache = cache
        self._counters = counters
        self._limiter = limiter
        self._default_ttl = default_ttl
        base = logger or logging.getLogger("datasetjob.generator")
        self.log = logging.LoggerAdapter(base, {"item_id": item_id, "shard": shard})

    @contextmanager
    def limit(self):
        if self._limiter is not None:
            self._limiter.acquire()
        self._counters.add(upstream_calls=1)
        yield

    def cached(self, key: str, fn: Callable[[], Any], ttl: int | None = None) -> Any:
        def compute():
            with self.limit():
                return fn()

        value, hit = self._cache.get_or_compute(key, compute, self._default_ttl if ttl is None else ttl)
        self._counters.add(cache_hits=int(hit), cache_misses=int(not hit))
        return value
