"""`ctx`: what a generator function gets beside its item, and `limited` for upstream calls.

    def example(item, ctx):
        # shared cache: a miss takes one request of the rate limit; a 429/503 answer backs off
        # and retries, and slows the whole scope
        prices = ctx.cached(f"prices:{item['symbol']}", lambda: ctx.retry(lambda: api.prices(item)))
        # an uncached call: one request (and an estimate of its tokens) for the block
        with ctx.limit(tokens=800):
            answer = llm.chat(item)
            ctx.usage(tokens=answer.usage.total_tokens, cost=0.002)   # corrects the estimate
        ...

    @datasetjob.limited            # every call of this function takes a request
    def fetch(url): ...

One request per upstream call: `ctx.cached` misses, `with ctx.limit()` blocks and `limited`
functions each take one, and they do not stack: a `limited` function called inside
`ctx.cached` or `ctx.limit()` uses the request already taken. Every retry of `ctx.retry` /
`retry_upstream` (in `backoff`) is a new request and takes a new one (the tokens estimated for
the block carry over to it: a throttled call used none).

Tokens: a block takes its estimate from the scope's tokens bucket before the call;
`ctx.usage(tokens=N)` reports the actual count, and the difference is charged or refunded. It
applies to the innermost open block, else to the last block that ended unreported, else it is
charged as is. A block that ends without a report counts its estimate as its usage.

Throttles (429/503, `Throttled`) seen by `ctx.retry`, `retry_upstream`, or escaping a
`ctx.limit()` block go to the scope: every worker waits out the Retry-After and the rates drop.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ParamSpec, Protocol, TypeVar, overload, runtime_checkable

from datasetjob.sdk.backoff import is_throttled, report_throttle, report_throttles_to, retry_upstream

_GENERATOR_LOG = logging.getLogger("datasetjob.generator")
T = TypeVar("T")
P = ParamSpec("P")
Estimate = float | Callable[..., float]  # tokens, or a function of the call's arguments giving them


class ItemCache(Protocol):
    """What ctx needs of the worker's cache (datasetjob.cache.Cache)."""

    def get_or_compute(self, key: str, fn: Callable[[], Any], ttl: int | None = None) -> tuple[Any, bool]: ...


class TokenSource(Protocol):
    """The least ctx needs of a rate limiter: one request at a time."""

    def acquire(self) -> object: ...


class Decision(Protocol):
    """A limiter's answer (datasetjob.ratelimit.Reply)."""

    @property
    def slot(self) -> float: ...

    @property
    def factor(self) -> float: ...

    @property
    def throttles(self) -> int: ...


@runtime_checkable
class ScopeLimits(Protocol):
    """What ctx uses of the worker's limiter (datasetjob.ratelimit.TokenBucket): weighted takes,
    usage corrections and throttle reports."""

    @property
    def units(self) -> frozenset[str]: ...

    def acquire(self) -> object: ...

    def take(self, weights: Mapping[str, float]) -> Decision: ...

    def correct(self, deltas: Mapping[str, float]) -> Decision: ...

    def throttled(self, retry_after: float | None = None, sent_at: float | None = None) -> Decision: ...

    def effective_rates(self) -> dict[str, float]: ...


@dataclass
class Counters:
    """Per-shard tallies, shared by the worker's threads: the cache, the usage the generators
    reported (requests, tokens, cost) and the scope's back-pressure as last seen."""

    cache_hits: int = 0
    cache_misses: int = 0
    upstream_calls: int = 0
    tokens: float = 0.0
    cost: float = 0.0
    throttles: int = 0  # throttles this shard reported to the scope
    scope_throttles: int = 0  # throttles the whole scope has seen (as of the latest decision)
    rate_factor: float | None = None  # the scope's back-pressure factor; None: no weighted limiter
    effective_rates: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def requests(self) -> int:
        return self.upstream_calls

    def add(self, **deltas: float) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def note_scope(self, decision: Decision, limiter: ScopeLimits) -> None:
        rates = limiter.effective_rates()
        with self._lock:
            self.rate_factor, self.scope_throttles, self.effective_rates = decision.factor, decision.throttles, rates

    def usage(self) -> dict[str, float]:
        """{"requests", "tokens", "cost"} so far."""
        with self._lock:
            tokens = round(self.tokens, 3)
            return {
                "requests": self.upstream_calls,
                "tokens": int(tokens) if tokens.is_integer() else tokens,
                "cost": round(self.cost, 6),
            }

    def rate_limit(self) -> dict[str, Any] | None:
        """The scope's effective rates (in the spec's units) and throttles; None without a
        weighted limiter or before its first decision."""
        with self._lock:
            if self.rate_factor is None:
                return None
            return {
                "effective": {name: round(rate, 3) for name, rate in self.effective_rates.items()},
                "factor": round(self.rate_factor, 4),
                "throttles": self.throttles,
                "scopeThrottles": self.scope_throttles,
            }


@dataclass
class _Hold:
    """A block holding a request: the tokens it charged, and when its request was taken."""

    estimate: float
    slot: float | None
    reported: bool = False
    counted: float = 0.0  # tokens counted into the shard's usage for it


# The ItemContext of the item this thread is generating: set when the worker makes the item's
# ctx, in the thread that runs the generator on it. `limited` functions, defined at import time
# before any ctx exists, take their request through it. Each thread has its own value, so items
# of one worker never see each other's ctx; where there is none (outside a worker, e.g. a unit
# test of the generator, or a thread the generator starts itself unless it runs in
# `contextvars.copy_context()`), `limited` functions simply run.
_current: ContextVar[ItemContext | None] = ContextVar("datasetjob_item_context", default=None)
_held = threading.local()  # .stack: this thread's open request-holding blocks


def _stack() -> list[_Hold]:
    stack: list[_Hold] | None = getattr(_held, "stack", None)
    if stack is None:
        stack = _held.stack = []
    return stack


def _estimate(tokens: Estimate, args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
    return float(tokens(*args, **kwargs)) if callable(tokens) else float(tokens)


@overload
def limited(fn: Callable[P, T], *, tokens: Estimate = 0) -> Callable[P, T]: ...


@overload
def limited(*, tokens: Estimate = 0) -> Callable[[Callable[P, T]], Callable[P, T]]: ...


def limited(
    fn: Callable[P, T] | None = None, *, tokens: Estimate = 0
) -> Callable[P, T] | Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator: each call of `fn` takes one request of the worker's shared rate limit, and
    `tokens` (a number, or a function of the call's arguments) from its token limit.

        @datasetjob.limited
        def market_data(date): return http.get(...).json()

        @datasetjob.limited(tokens=lambda prompt: len(prompt) // 3 + 500)
        def complete(prompt): ...

    Inside `ctx.cached(...)` or `with ctx.limit():` the request already taken is used (no double
    counting). Outside a worker (e.g. in a unit test of the generator) it just calls `fn`.
    """

    def wrap(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            ctx = _current.get()
            if ctx is None:
                return fn(*args, **kwargs)
            with ctx.limit(tokens=_estimate(tokens, args, kwargs)):
                return fn(*args, **kwargs)

        return wrapper

    return wrap if fn is None else wrap(fn)


def _report_to_current(exc: BaseException, retry_after: float | None) -> None:
    ctx = _current.get()
    if ctx is not None:
        ctx._report_throttle(exc, retry_after)


report_throttles_to(_report_to_current)  # retry_upstream's throttles reach the calling item's scope


class ItemContext:
    """Passed as `ctx` to `fn(item, ctx)`.

    ctx.cached(key, fn, ttl=None)  get-or-compute in the shared cache; a miss calls fn under
                                   one request of the rate limit (single-flight: one caller
                                   across all pods computes a missing key)
    ctx.limit(tokens=0)            context manager or decorator: one request of the shared
                                   rate limit, and `tokens` (the estimate) of its token limit
    ctx.usage(tokens=, cost=, requests=)
                                   what the call actually used: corrects the token estimate,
                                   and counts into the shard's usage
    ctx.limited(fn, tokens=0)      wrapper: each call of fn takes one request (and tokens)
    ctx.retry(fn, attempts=5, ...) call fn, backing off on 429/503 with full jitter; each retry
                                   takes a new request; each throttle slows the whole scope
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
        self._scope = limiter if isinstance(limiter, ScopeLimits) else None
        self._default_ttl = default_ttl
        self._last_hold: _Hold | None = None  # the last block that ended, for a late ctx.usage
        _current.set(self)  # this thread's item, for `limited` functions
        self._logger = logger

    @functools.cached_property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose lines carry the shard and item id (made on first use: most items never log)."""
        return logging.LoggerAdapter(self._logger or _GENERATOR_LOG, {"item_id": self.item_id, "shard": self.shard})

    # -- taking and correcting -------------------------------------------------------------
    def _take(self, tokens: float) -> _Hold:
        slot = None
        if self._scope is not None:
            decision = self._scope.take({"requests": 1.0, "tokens": tokens})
            slot = decision.slot
            self._counters.note_scope(decision, self._scope)
        elif self._limiter is not None:
            self._limiter.acquire()
        self._counters.add(upstream_calls=1)
        return _Hold(tokens, slot)

    def _retake(self) -> None:
        """A retry is a new request, even inside a block; the block's token estimate carries over."""
        hold = self._take(0.0)
        stack = _stack()
        if stack:
            stack[-1].slot = hold.slot

    def _report_throttle(self, exc: BaseException, retry_after: float | None) -> None:
        self._counters.add(throttles=1)
        if self._scope is None:
            return
        stack = _stack()
        hold = stack[-1] if stack else self._last_hold
        decision = self._scope.throttled(retry_after, hold.slot if hold else None)
        self._counters.note_scope(decision, self._scope)
        self.log.info(
            "upstream throttled (%s): the scope waits %s and runs at %.0f%% of its limits",
            exc,
            f"{retry_after:g}s" if retry_after is not None else "a moment",
            decision.factor * 100,
        )

    @contextmanager
    def _limit(self, tokens: float) -> Iterator[None]:
        stack = _stack()
        if stack:  # nested: the outer block's request covers this call
            yield
            return
        hold = self._take(tokens)
        stack.append(hold)
        throttled = False
        try:
            yield
        except Exception as exc:
            if is_throttled(exc):
                throttled = True  # the call used nothing
                report_throttle(exc, self._report_throttle)
            raise
        finally:
            stack.pop()
            if not hold.reported and not throttled:
                hold.counted = hold.estimate
                self._counters.add(tokens=hold.estimate)
            self._last_hold = hold

    def limit(self, tokens: float = 0) -> AbstractContextManager[None]:
        """One request of the shared rate limit for the block (blocks until there is one), and
        `tokens` (the call's estimate) of its token limit; also a decorator. Nested blocks,
        `limited` functions and ctx.cached misses inside it share that request."""
        return self._limit(float(tokens))

    def usage(self, tokens: float | None = None, cost: float | None = None, requests: int | None = None) -> None:
        """Report what the upstream call actually used (e.g. the response's token count, its
        price in your currency). Tokens correct the block's estimate in the scope's token
        limit; `requests` counts calls made outside ctx.limit. All count into the shard's usage."""
        deltas: dict[str, float] = {}
        if tokens is not None:
            stack = _stack()
            hold = stack[-1] if stack else self._last_hold
            if hold is not None and not hold.reported:
                charge, count = tokens - hold.estimate, tokens - hold.counted
                hold.reported, hold.counted = True, float(tokens)
            else:
                charge = count = float(tokens)
            deltas["tokens"] = charge
            self._counters.add(tokens=count)
        if requests:
            deltas["requests"] = float(requests)
            self._counters.add(upstream_calls=requests)
        if cost:
            self._counters.add(cost=cost)
        if self._scope is not None:
            units = self._scope.units
            deltas = {unit: delta for unit, delta in deltas.items() if delta and unit in units}
            if deltas:
                self._counters.note_scope(self._scope.correct(deltas), self._scope)

    def limited(self, fn: Callable[P, T], tokens: Estimate = 0) -> Callable[P, T]:
        """`fn` wrapped so that each call takes one request (and `tokens`): `get = ctx.limited(http.get)`."""

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            with self.limit(tokens=_estimate(tokens, args, kwargs)):
                return fn(*args, **kwargs)

        return wrapper

    def retry(self, fn: Callable[[], T], tokens: float = 0, **options: Any) -> T:
        """retry_upstream(fn, **options) under this worker's rate limit: the first call takes a
        request (and `tokens`) unless the caller holds one (inside ctx.cached or ctx.limit());
        every retry takes a new request, so backing off never bursts past the shared limit,
        and every throttle pauses and slows the whole scope."""
        options.setdefault("before_retry", self._retake)
        options.setdefault("on_throttle", self._report_throttle)
        with self.limit(tokens=tokens):
            return retry_upstream(fn, **options)

    def cached(self, key: str, fn: Callable[[], Any], ttl: int | None = None) -> Any:
        def compute() -> Any:
            with self.limit():
                return fn()

        value, hit = self._cache.get_or_compute(key, compute, self._default_ttl if ttl is None else ttl)
        self._counters.add(cache_hits=int(hit), cache_misses=int(not hit))
        return value


__all__ = ["Counters", "ItemContext", "limited"]
