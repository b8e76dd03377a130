"""`ctx`: what a generator function gets beside its item, and `limited` for upstream calls.

    def example(item, ctx):
        # shared cache: a miss takes one rate-limit token; a 429/503 answer backs off and retries
        prices = ctx.cached(f"prices:{item['symbol']}", lambda: ctx.retry(lambda: api.prices(item)))
        # an uncached call: one token for the block
        with ctx.limit():
            flow = api.flow(item)
        ...

    @datasetjob.limited            # every call of this function takes a token
    def fetch(url): ...

One token per upstream request: `ctx.cached` misses, `with ctx.limit()` blocks and
`limited` functions each take one, and they do not stack: a `limited` function called
inside `ctx.cached` or `ctx.limit()` uses the token already taken. Every retry of
`ctx.retry` / `retry_upstream` (in `backoff`) is a new request and takes a new token.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ParamSpec, Protocol, TypeVar

from datasetjob.sdk.backoff import retry_upstream

_GENERATOR_LOG = logging.getLogger("datasetjob.generator")
T = TypeVar("T")
P = ParamSpec("P")


class ItemCache(Protocol):
    """What ctx needs of the worker's cache (datasetjob.cache.Cache)."""

    def get_or_compute(self, key: str, fn: Callable[[], Any], ttl: int | None = None) -> tuple[Any, bool]: ...


class TokenSource(Protocol):
    """What ctx needs of the worker's rate limiter (datasetjob.ratelimit.TokenBucket)."""

    def acquire(self) -> object: ...


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


# The ItemContext of the item this thread is generating: set when the worker makes the item's
# ctx, in the thread that runs the generator on it. `limited` functions, defined at import time
# before any ctx exists, take their token through it. Each thread has its own value, so items
# of one worker never see each other's ctx; where there is none (outside a worker, e.g. a unit
# test of the generator, or a thread the generator starts itself unless it runs in
# `contextvars.copy_context()`), `limited` functions simply run.
_current: ContextVar[ItemContext | None] = ContextVar("datasetjob_item_context", default=None)
_held = threading.local()  # depth of token-holding blocks in this thread


@contextmanager
def _token(limiter: TokenSource | None, counters: Counters | None) -> Iterator[None]:
    """Take one token unless this thread already holds one (nested blocks share it)."""
    depth = getattr(_held, "depth", 0)
    if depth == 0:
        if limiter is not None:
            limiter.acquire()
        if counters is not None:
            counters.add(upstream_calls=1)
    _held.depth = depth + 1
    try:
        yield
    finally:
        _held.depth = depth


def _take_fresh_token(limiter: TokenSource | None, counters: Counters | None) -> None:
    """A retry is a new request: always a new token, even inside a token-holding block."""
    if limiter is not None:
        limiter.acquire()
    if counters is not None:
        counters.add(upstream_calls=1)


def limited(fn: Callable[P, T]) -> Callable[P, T]:
    """Decorator: each call of `fn` takes one token of the worker's shared rate limit.

        @datasetjob.limited
        def market_data(date): return http.get(...).json()

    Inside `ctx.cached(...)` or `with ctx.limit():` the token already taken is used (no double
    counting). Outside a worker (e.g. in a unit test of the generator) it just calls `fn`.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        ctx = _current.get()
        if ctx is None:
            return fn(*args, **kwargs)
        with ctx.limit():
            return fn(*args, **kwargs)

    return wrapper


class ItemContext:
    """Passed as `ctx` to `fn(item, ctx)`.

    ctx.cached(key, fn, ttl=None)  get-or-compute in the shared cache; a miss calls fn under
                                   one rate-limit token (single-flight: one caller across
                                   all pods computes a missing key)
    ctx.limit()                    context manager: one token of the shared rate limit
    ctx.limited(fn)                decorator / wrapper: each call of fn takes one token
    ctx.retry(fn, attempts=5, ...) call fn, backing off on 429/503 with full jitter; each retry
                                   takes a new token (see retry_upstream)
    ctx.log                        a logger; lines carry the shard and item id
    ctx.item_id, ctx.shard, ctx.index, ctx.run_id
    """

    def __init__(
        self,
        *,
        item: Any,
        item_id: str,
        shard: str,
        index: int,
        run_id: str,
        cache: ItemCache,
        counters: Counters,
        limiter: TokenSource | None = None,
        default_ttl: int | None = None,
        logger: logging.Logger | None = None,
    ):
        self.item = item
        self.item_id = item_id
        self.shard = shard
        self.index = index
        self.run_id = run_id
        self._cache = cache
        self._counters = counters
        self._limiter = limiter
        self._default_ttl = default_ttl
        _current.set(self)  # this thread's item, for `limited` functions
        self._logger = logger

    @functools.cached_property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose lines carry the shard and item id (made on first use: most items never log)."""
        return logging.LoggerAdapter(self._logger or _GENERATOR_LOG, {"item_id": self.item_id, "shard": self.shard})

    @contextmanager
    def limit(self) -> Iterator[None]:
        """Take one token of the shared rate limit for the block (blocks until there is one).
        Nested blocks, `limited` functions and ctx.cached misses inside it share that token."""
        with _token(self._limiter, self._counters):
            yield

    def limited(self, fn: Callable[P, T]) -> Callable[P, T]:
        """`fn` wrapped so that each call takes one token: `get = ctx.limited(http.get)`."""

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            with self.limit():
                return fn(*args, **kwargs)

        return wrapper

    def retry(self, fn: Callable[[], T], **options: Any) -> T:
        """retry_upstream(fn, **options) under this worker's rate limit: the first call takes a
        token unless the caller holds one (inside ctx.cached or ctx.limit()); every retry
        takes a new one, so backing off never bursts past the shared budget."""
        options.setdefault("before_retry", lambda: _take_fresh_token(self._limiter, self._counters))
        with self.limit():
            return retry_upstream(fn, **options)

    def cached(self, key: str, fn: Callable[[], Any], ttl: int | None = None) -> Any:
        def compute() -> Any:
            with self.limit():
                return fn()

        value, hit = self._cache.get_or_compute(key, compute, self._default_ttl if ttl is None else ttl)
        self._counters.add(cache_hits=int(hit), cache_misses=int(not hit))
        return value


__all__ = ["Counters", "ItemContext", "limited"]
