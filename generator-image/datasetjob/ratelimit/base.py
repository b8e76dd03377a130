"""The token bucket's arithmetic and interface: `acquire`/`try_acquire` over one atomic step per backend."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod


def bucket_step(
    tokens: float | None, at: float | None, now: float, rate: float, burst: float, reserve: bool
) -> tuple[float, float, float]:
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


class TokenBucket(ABC):
    """`requests_per_second` sustained, `burst` at once, wherever the bucket's state lives.

    A backend provides `step`, the one atomic decision; waiting is the same for every backend.
    """

    @abstractmethod
    def step(self, reserve: bool) -> tuple[float, float]:
        """(wait, slot): wait == 0 if a token was taken now, else the seconds until one will be
        (with `reserve` that future token is taken all the same); slot = the time of that token
        (epoch seconds, on the clock the backend decides with)."""

    def try_acquire(self) -> float:
        """0 if a token was taken, else seconds until one will be available."""
        return self.step(reserve=False)[0]

    def acquire(self) -> float:
        """Block until a token is ours; returns the time of its slot (epoch seconds)."""
        wait, slot = self.step(reserve=True)
        if wait > 0:
            time.sleep(wait)
        return slot
