"""The limiter's arithmetic and interface: weighted takes from a scope's buckets, usage
corrections and shared back-pressure, over one atomic step per backend.

A scope holds one bucket per limit (e.g. requests per second and tokens per minute) and a
back-pressure state: a factor on every rate (AIMD: halved by a throttle, recovering additively)
and a "paused until" time that every worker of the scope waits out. `scope_step` is the one
decision; the Redis backend runs the same decision as a Lua script.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Back-pressure (AIMD): a throttle multiplies the scope's rates by DECREASE (at most once per
# round trip: only a request sent after the last decrease decreases again, as in TCP, so a
# volley of 429s from one overload halves once); the factor then grows back by RECOVERY of the
# configured rates per second. Without a Retry-After the scope pauses DEFAULT_PAUSE seconds.
DECREASE = 0.5
RECOVERY_PER_SECOND = 0.02
MIN_FACTOR = 0.02
DEFAULT_PAUSE = 1.0
MAX_PAUSE = 300.0

REQUESTS, TOKENS = "requests", "tokens"


def bucket_step(
    tokens: float | None, at: float | None, now: float, rate: float, burst: float, reserve: bool
) -> tuple[float, float, float]:
    """One decision of a single bucket of weight-1 takes: (tokens, at, wait) after a request at `now`.

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


@dataclass(frozen=True)
class Limit:
    """One bucket of a scope: `rate` units per second sustained, `burst` at once.

    `name` is the spec field it comes from (e.g. tokensPerMinute), `unit` what a take weighs
    against it (requests or tokens), `per` the seconds of the spec's unit (60 for per minute)."""

    name: str
    unit: str
    rate: float
    burst: float
    per: float = 1.0

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"{self.name}: the rate must be > 0")
        if not self.burst > 0:
            raise ValueError(f"{self.name}: the burst must be > 0")

    def share(self, parts: int) -> Limit:
        """This limit divided among `parts` pods (the per-pod fallback without Redis)."""
        return Limit(self.name, self.unit, self.rate / parts, max(1, int(self.burst) // parts), self.per)


@dataclass(frozen=True)
class Reply:
    """A decision: wait == 0 if the take happened now, else seconds until its slot (with a
    reservation the take happened all the same); slot = the time of the take, on the clock
    the backend decides with; factor, paused_until and throttles: the scope's back-pressure."""

    wait: float
    slot: float
    factor: float = 1.0
    paused_until: float = 0.0
    throttles: int = 0


def limits_of(requests_per_second: float | None, burst: float, limits: Sequence[Limit] | None) -> tuple[Limit, ...]:
    """The given limits, or one requests-per-second limit (the original constructor form)."""
    if limits:
        return tuple(limits)
    if requests_per_second is None:
        raise ValueError("at least one limit is required")
    if requests_per_second <= 0:
        raise ValueError("requests_per_second must be > 0")
    return (Limit("requestsPerSecond", REQUESTS, float(requests_per_second), max(1.0, float(burst))),)


def scope_step(
    state: dict[str, Any],
    now: float,
    limits: Sequence[Limit],
    op: str,
    weights: Mapping[str, float],
    reserve: bool = True,
    retry_after: float | None = None,
    sent_at: float | None = None,
) -> Reply:
    """Apply `op` to a scope's `state` (updated in place) at `now`; the Lua script in
    redis_bucket mirrors this line by line.

    take      weights[unit] from every bucket; waits for the slowest bucket and any pause
    adjust    weights[unit] more from every bucket (negative: a refund, up to the burst)
    throttle  the upstream said "slow down": pause the scope, decrease its factor
    peek      nothing taken: the state as it is

    state: at (time the buckets were last refilled), tokens {limit name: level}, factor,
    factor_at, paused_until, throttles, decreased_at."""
    tokens: dict[str, float] = state.setdefault("tokens", {})
    at = state.get("at")
    if at is None:
        at = now
    for limit in limits:
        if tokens.get(limit.name) is None:
            tokens[limit.name] = float(limit.burst)
    factor = float(state.get("factor", 1.0))
    factor_at = float(state.get("factor_at", now))
    # refill at the factor in force over the interval, then let the factor recover
    if now > at:
        for limit in limits:
            tokens[limit.name] = min(float(limit.burst), tokens[limit.name] + (now - at) * limit.rate * factor)
        at = now
    if now > factor_at:
        factor = min(1.0, factor + (now - factor_at) * RECOVERY_PER_SECOND)
        factor_at = now
    paused_until = float(state.get("paused_until", 0.0))
    throttles = int(state.get("throttles", 0))
    wait = 0.0
    if op == "take":
        need = 0.0
        for limit in limits:
            shortfall = weights.get(limit.unit, 0.0) - tokens[limit.name]
            if shortfall > 0:
                need = max(need, shortfall / (limit.rate * factor))
        slot = max(now, at) + need
        wait = slot - now
        if wait <= 0 or reserve:
            for limit in limits:
                tokens[limit.name] -= weights.get(limit.unit, 0.0)
        wait = max(0.0, wait)
    elif op == "adjust":
        for limit in limits:
            tokens[limit.name] = min(float(limit.burst), tokens[limit.name] - weights.get(limit.unit, 0.0))
    elif op == "throttle":
        throttles += 1
        pause = DEFAULT_PAUSE if retry_after is None else min(MAX_PAUSE, max(0.0, retry_after))
        paused_until = max(paused_until, now + pause)
        decreased_at = float(state.get("decreased_at", 0.0))
        if sent_at is None or sent_at >= decreased_at:
            factor = max(MIN_FACTOR, factor * DECREASE)
            state["decreased_at"] = now
        # nothing refills during the pause, and nothing saved before it bursts after it
        for limit in limits:
            tokens[limit.name] = min(0.0, tokens[limit.name])
        at = max(at, paused_until)
        factor_at = max(factor_at, paused_until)  # the recovery starts once the pause is over
    state.update(at=at, factor=factor, factor_at=factor_at, paused_until=paused_until, throttles=throttles)
    return Reply(wait, now + wait, factor, paused_until, throttles)


class TokenBucket(ABC):
    """The limits of a scope, wherever its state lives.

    A backend provides `_decide`, the one atomic decision; waiting is the same for every backend.
      take(weights)         block until the weights are ours (and any pause of the scope is over)
      acquire(tokens=0)     take one request (and `tokens`); returns the slot
      try_acquire()         take one request only if it is there now, else the seconds until it is
      correct(deltas)       after the call: charge the difference between actual and estimate
      throttled(...)        an upstream throttled us: pause and slow down the whole scope
    """

    limits: tuple[Limit, ...] = ()
    last: Reply | None = None  # the scope's back-pressure, as of the latest decision

    @abstractmethod
    def _decide(
        self,
        op: str,
        weights: Mapping[str, float],
        reserve: bool = True,
        retry_after: float | None = None,
        sent_at: float | None = None,
    ) -> Reply:
        """`scope_step` on the backend's state (see there)."""

    def _note(self, reply: Reply) -> Reply:
        self.last = reply
        return reply

    @property
    def rate(self) -> float:
        """The first limit's rate (a single-limit bucket's, per second)."""
        return self.limits[0].rate

    @property
    def burst(self) -> float:
        return self.limits[0].burst

    @property
    def units(self) -> frozenset[str]:
        return frozenset(limit.unit for limit in self.limits)

    def step(self, reserve: bool) -> tuple[float, float]:
        """(wait, slot) of one request: see Reply."""
        reply = self._note(self._decide("take", {REQUESTS: 1.0}, reserve))
        return reply.wait, reply.slot

    def try_acquire(self) -> float:
        """0 if a request was taken, else seconds until one will be available."""
        return self.step(reserve=False)[0]

    def take(self, weights: Mapping[str, float]) -> Reply:
        """Reserve `weights` from every bucket, sleep until their slot, and past any pause the
        scope entered meanwhile (looked up again only once the scope has seen a throttle)."""
        reply = self._note(self._decide("take", weights))
        if reply.wait > 0:
            time.sleep(reply.wait)
            if reply.throttles:
                now = self._note(self._decide("peek", {}))
                if now.paused_until > now.slot:
                    time.sleep(now.paused_until - now.slot)
        return reply

    def acquire(self, tokens: float = 0.0) -> float:
        """Block until a request (and `tokens`) is ours; returns the time of its slot."""
        return self.take({REQUESTS: 1.0, TOKENS: float(tokens)}).slot

    def correct(self, deltas: Mapping[str, float]) -> Reply:
        """Charge `deltas` (actual minus estimate; negative refunds) to the buckets."""
        return self._note(self._decide("adjust", deltas))

    def throttled(self, retry_after: float | None = None, sent_at: float | None = None) -> Reply:
        """Report an upstream throttle: every worker of the scope waits `retry_after` seconds
        (DEFAULT_PAUSE without one) and the scope's rates drop by DECREASE, unless the
        throttled request (taken at `sent_at`) predates the last decrease."""
        return self._note(self._decide("throttle", {}, retry_after=retry_after, sent_at=sent_at))

    def effective_rates(self, reply: Reply | None = None) -> dict[str, float]:
        """Each limit's rate under the current back-pressure, in its spec unit (e.g. tokensPerMinute)."""
        factor = (reply or self.last or Reply(0.0, 0.0)).factor
        return {limit.name: limit.rate * limit.per * factor for limit in self.limits}


__all__ = [
    "DECREASE",
    "DEFAULT_PAUSE",
    "Limit",
    "RECOVERY_PER_SECOND",
    "REQUESTS",
    "Reply",
    "TOKENS",
    "TokenBucket",
    "bucket_step",
    "limits_of",
    "scope_step",
]
