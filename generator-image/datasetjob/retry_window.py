"""How long, and how often, a process retries a shared service (the S3 store, Redis) that went away.

A call that fails at the connection (refused, reset, timed out, or a 5xx "slow down") is tried
again with exponential backoff and jitter until its window, counted from its first failure, is
spent: 120 s by default, DSJ_S3_RETRY_SECONDS / DSJ_REDIS_RETRY_SECONDS to change it. A pod
restarted or rescheduled behind a Service is back well within that, and a service gone for
longer makes the process fail with the service's own error instead of hanging. Pure, but for
reading the environment.
"""

from __future__ import annotations

import os

DEFAULT_WINDOW_SECONDS = 120.0
S3_WINDOW_ENV = "DSJ_S3_RETRY_SECONDS"
REDIS_WINDOW_ENV = "DSJ_REDIS_RETRY_SECONDS"

FIRST_DELAY_SECONDS = 0.2
# A service back after a long outage is noticed within this long.
MAX_DELAY_SECONDS = 10.0


def window_seconds(env_name: str, default: float = DEFAULT_WINDOW_SECONDS) -> float:
    """The window set in `env_name`, or `default` when unset or not a number >= 0 (0: no retry)."""
    raw = os.environ.get(env_name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    return value if value >= 0 else default


def backoff_delay(attempt: int, jitter: float) -> float:
    """The pause after failed attempt `attempt` (1-based): doubling from FIRST_DELAY_SECONDS up to
    MAX_DELAY_SECONDS, of which `jitter` in [0, 1) drops up to half, so processes that lost the
    service together do not all come back in the same instant. Pure."""
    ceiling = min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS * 2.0 ** min(attempt - 1, 32))
    return ceiling * (1.0 - jitter / 2)


def next_delay(attempt: int, first_failure: float, now: float, window: float, jitter: float) -> float | None:
    """The pause before trying again, or None once the window since `first_failure` is spent; the
    pause never runs past the window's end (one last try falls on it). Pure."""
    left = first_failure + window - now
    if left <= 0:
        return None
    return min(backoff_delay(attempt, jitter), left)


__all__ = [
    "DEFAULT_WINDOW_SECONDS",
    "S3_WINDOW_ENV",
    "REDIS_WINDOW_ENV",
    "window_seconds",
    "backoff_delay",
    "next_delay",
]
