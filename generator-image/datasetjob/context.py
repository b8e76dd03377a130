"""`ctx`: what a generator function gets beside its item, and the SDK helpers for upstream calls.

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
`ctx.retry` / `retry_upstream` is a new request and takes a new token.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import random
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

T = TypeVar("T")

log = logging.getLogger("datasetjob.generator")


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


# The worker's limiter and counters (one of each per worker process), for `limited` functions,
# which are defined at import time, before any ctx exists. Outside a worker both stay None
# and `limited` functions simply run.
_active: dict[str, Any] = {"limiter": None, "counters": None}
_held = threading.local()  # depth of token-holding blocks in this thread


@contextmanager
def _token(limiter, counters):
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


def _take_fresh_token(limiter, counters) -> None:
    """A retry is a new request: always a new token, even inside a token-holding block."""
    if limiter is not None:
        limiter.acquire()
    if counters is not None:
        counters.add(upstream_calls=1)


def limited(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator: each call of `fn` takes one token of the worker's shared rate limit.

        @datasetjob.limited
        def market_data(date): return http.get(...).json()

    Inside `ctx.cached(...)` or `with ctx.limit():` the token already taken is used (no double
    counting). Outside a worker (e.g. in a unit test of the generator) it just calls `fn`.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _token(_active["limiter"], _active["counters"]):
            return fn(*args, **kwargs)

    return wrapper


# --------------------------------------------------------------------------- 429 / 503 back-off

RETRY_STATUSES = frozenset({429, 503})


class Throttled(Exception):
    """Raise from a generator's client code when the upstream says "slow down" in a way
    `retry_upstream` cannot see on its own (e.g. an error payload inside a 200 response)."""

    def __init__(self, message: str = "upstream throttled the request", retry_after: float | None = None,
                 status: int = 429):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, for the common client libraries' exception types."""
    for holder in (exc, getattr(exc, "response", None)):
        if holder is None:
            continue
        if isinstance(holder, dict):  # botocore ClientError.response
            code = holder.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(code, int):
                return code
            continue
        for attr in ("status_code", "status", "code", "http_status"):
            code = getattr(holder, attr, None)
            if isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599:
                return code
    return None


def _retry_after_of(exc: BaseException) -> float | None:
    """Seconds from a Retry-After hint (Throttled.retry_after or the response headers)."""
    if isinstance(exc, Throttled) and exc.retry_after is not None:
        return float(exc.retry_after)
    for holder in (exc, getattr(exc, "response", None)):
        headers = getattr(holder, "headers", None)
        if headers is None:
            continue
        try:
            value = headers.get("Retry-After") or headers.get("retry-after")
        except AttributeError:
            continue
        if not value:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, when.timestamp() - time.time())
            except (TypeError, ValueError):
                return None
    return None


def is_throttled(exc: BaseException) -> bool:
    """True for Throttled and for exceptions carrying HTTP 429 or 503."""
    return isinstance(exc, Throttled) or _status_of(exc) in RETRY_STATUSES


def retry_upstream(fn: Callable[[], T], *, attempts: int = 5, base_delay: float = 0.5,
                   max_delay: float = 30.0, retryable: Callable[[BaseException], bool] = is_throttled,
                   before_retry: Callable[[], None] | None = None,
                   sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `fn()`; when the upstream answers 429/503, back off and call again.

    Back-off is "full jitter": before retry k (1, 2, ...) sleep a uniform random time in
    [0, min(max_delay, base_delay * 2**(k-1))], or the upstream's Retry-After if that is
    longer (capped at max_delay). After `attempts` calls the last error propagates, as does
    any error `retryable` rejects (by default everything but Throttled and HTTP 429/503,
    recognised on requests, httpx, urllib, aiohttp and botocore exceptions).

    `before_retry` runs before each retry (ctx.retry uses it to take a rate-limit token).
    """
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - filtered by `retryable`
            if attempt >= attempts or not retryable(exc):
                raise
            delay = random.uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1)))
            hint = _retry_after_of(exc)
            if hint is not None:
                delay = max(delay, min(hint, max_delay))
            log.info("upstream throttled (%s); retry %d of %d in %.2fs", exc, attempt, attempts - 1, delay)
            sleep(delay)
            if before_retry is not None:
                before_retry()
            attempt += 1


# --------------------------------------------------------------------------- ctx


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
        _active["limiter"], _active["counters"] = limiter, counters
        base = logger or logging.getLogger("datasetjob.generator")
        self.log = logging.LoggerAdapter(base, {"item_id": item_id, "shard": shard})

    @contextmanager
    def limit(self):
        """Take one token of the shared rate limit for the block (blocks until there is one).
        Nested blocks, `limited` functions and ctx.cached misses inside it share that token."""
        with _token(self._limiter, self._counters):
            yield

    def limited(self, fn: Callable[..., T]) -> Callable[..., T]:
        """`fn` wrapped so that each call takes one token: `get = ctx.limited(http.get)`."""

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.limit():
                return fn(*args, **kwargs)

        return wrapper

    def retry(self, fn: Callable[[], T], **options) -> T:
        """retry_upstream(fn, **options) under this worker's rate limit: the first call takes a
        token unless the caller holds one (inside ctx.cached or ctx.limit()); every retry
        takes a new one, so backing off never bursts past the shared budget."""
        options.setdefault("before_retry", lambda: _take_fresh_token(self._limiter, self._counters))
        with self.limit():
            return retry_upstream(fn, **options)

    def cached(self, key: str, fn: Callable[[], Any], ttl: int | None = None) -> Any:
        def compute():
            with self.limit():
                return fn()

        value, hit = self._cache.get_or_compute(key, compute, self._default_ttl if ttl is None else ttl)
        self._counters.add(cache_hits=int(hit), cache_misses=int(not hit))
        return value


__all__ = ["Counters", "ItemContext", "Throttled", "is_throttled", "limited", "retry_upstream"]
