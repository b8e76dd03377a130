"""The worker's connection to the shared Redis (one per URL per process) and the names of its keys.

Keys
----
dsj:cache:{namespace}:{key}        a cached value (datasetjob.cache.redis_backend)
dsj:lock:{namespace}:{key}         its single-flight lock
dsj:stats:{namespace}:{runId}      hash: hits / misses of the run
dsj:progress:{namespace}:{runId}   hash: shard index -> the shard's latest progress snapshot
dsj:ratelimit:{scope}              hash: a token bucket (datasetjob.ratelimit.redis_bucket)

Degradation: Redis is a speed-up, never a single point of failure. If it is unreachable at
start or lost mid-run, the process logs ONE warning, its users carry on without it, and the
link tries Redis again every DSJ_REDIS_RECONNECT_SECONDS (30 s). The one user that cannot go on
without it, the run's spend ledger, waits for it instead (`RedisLink.wait_for`): retried with
backoff for up to DSJ_REDIS_RETRY_SECONDS (120 s), then RedisUnavailable. A Redis that comes
back empty (a new pod) costs cache misses and fresh token buckets, never a wrong dataset.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit, urlunsplit

from datasetjob.errors import RedisUnavailable
from datasetjob.redaction import redact_text
from datasetjob.retry_window import REDIS_WINDOW_ENV, next_delay, window_seconds

if TYPE_CHECKING:  # redis-py takes ~0.1 s to import: loaded by the first link, so a run without Redis never pays it
    import redis
    from redis.commands.core import Script

# the logger these messages always had: they are mostly about the cache
log = logging.getLogger("datasetjob.cache")

T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 2.0
COMMAND_TIMEOUT_SECONDS = 5.0
RUN_KEYS_TTL_SECONDS = 7 * 86400  # stats and progress hashes of a run


# --------------------------------------------------------------------------------- keys


def cache_key_prefix(namespace: str) -> str:
    return f"dsj:cache:{namespace}:"


def lock_key_prefix(namespace: str) -> str:
    return f"dsj:lock:{namespace}:"


def stats_key(namespace: str, run_id: str) -> str:
    return f"dsj:stats:{namespace}:{run_id}"


def progress_key(namespace: str, run_id: str) -> str:
    return f"dsj:progress:{namespace}:{run_id}"


def ratelimit_key(scope: str) -> str:
    return f"dsj:ratelimit:{scope}"


# --------------------------------------------------------------------------------- URLs


def effective_redis_url(spec_redis_url: str | None) -> str | None:
    """DSJ_REDIS_URL (set by `dsj run --redis-url` or the operator) overrides an absent spec value."""
    override = os.environ.get("DSJ_REDIS_URL")
    if spec_redis_url is None and override is not None:
        return override
    return spec_redis_url


def reconnect_seconds() -> float:
    return float(os.environ.get("DSJ_REDIS_RECONNECT_SECONDS", "30"))


def is_transient_redis_error(exc: BaseException) -> bool:
    """An error that waiting can cure (no connection, a timeout, a server still loading its
    data), unlike a refused password or a missing permission."""
    from redis.exceptions import AuthenticationError, AuthorizationError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(exc, AuthenticationError | AuthorizationError):
        return False
    return isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError)


def redact_url(url: str) -> str:
    """The URL without its password, for logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable redis url>"
    if parts.password is not None:
        user = parts.username or ""
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        url = urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))
    return redact_text(url)  # a password in the query string (?password=...) too


# --------------------------------------------------------------------------------- the link

_warned_pid: int | None = None
_warn_lock = threading.Lock()


def _warn_once(safe_url: str, exc: BaseException) -> None:
    """The one warning per process that the shared Redis is not in use."""
    global _warned_pid
    with _warn_lock:
        if _warned_pid == os.getpid():
            log.debug("Redis at %s still unavailable: %s: %s", safe_url, type(exc).__name__, exc)
            return
        _warned_pid = os.getpid()
    log.warning(
        "shared Redis at %s is unavailable (%s: %s); continuing without it: cache lookups compute "
        "directly (counted as misses) and rate limits fall back to this pod's share "
        "(requestsPerSecond / parallelism). Retrying the connection every %.0fs; "
        "this warning is shown once.",
        safe_url,
        type(exc).__name__,
        exc,
        reconnect_seconds(),
    )


class RedisLink:
    """One redis-py client per URL per process, and whether that Redis is usable right now.

    Shared by the cache, the rate limiter and the progress sink of a worker, so a lost Redis
    costs one connection attempt per DSJ_REDIS_RECONNECT_SECONDS, not one per lookup.
    """

    def __init__(self, url: str):
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        self.url = url
        self.safe_url = redact_url(url)
        self.client = redis.Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_timeout=COMMAND_TIMEOUT_SECONDS,
            # one quick retry covers a pooled connection the server closed; more would stall
            # every in-flight item when Redis is really gone
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.02), 1),
            client_name="datasetjob",
        )
        self._lock = threading.Lock()
        self._down = False
        self._retry_at = 0.0
        self._scripts: dict[str, Script] = {}

    @property
    def down(self) -> bool:
        return self._down

    def usable(self) -> bool:
        return not self._down or time.monotonic() >= self._retry_at

    def script(self, lua: str) -> Script:
        found = self._scripts.get(lua)
        if found is None:
            found = self._scripts[lua] = self.client.register_script(lua)
        return found

    def run(self, op: Callable[[redis.Redis], T]) -> tuple[bool, T | None]:
        """(True, result) or (False, None) when Redis is down (now or in its back-off window)."""
        import redis  # loaded already by __init__

        if not self.usable():
            return False, None
        try:
            result = op(self.client)
        except (redis.RedisError, OSError) as exc:
            self.failed(exc)
            return False, None
        if self._down:
            self._recovered()
        return True, result

    def wait_for(self, op: Callable[[redis.Redis], T], what: str, window: float | None = None) -> T:
        """op's result, tried now even while the link is in its back-off window, and again with
        backoff while Redis does not answer, for up to `window` seconds from the first failure
        (DSJ_REDIS_RETRY_SECONDS, else 120). RedisUnavailable past that, or at once for an error
        no wait cures (a refused password). One line when the wait starts; the link's own line
        says when Redis is back."""
        import redis  # loaded already by __init__

        seconds = window_seconds(REDIS_WINDOW_ENV) if window is None else window
        first_failure: float | None = None
        attempt = 0
        while True:
            attempt += 1
            try:
                result = op(self.client)
            except (redis.RedisError, OSError) as exc:
                self.failed(exc)
                now = time.monotonic()
                first_failure = now if first_failure is None else first_failure
                transient = is_transient_redis_error(exc)
                delay = next_delay(attempt, first_failure, now, seconds, random.random()) if transient else None
                if delay is None:
                    raise self._unavailable(what, exc, seconds) from None
                if attempt == 1:
                    log.warning(
                        "%s: waiting for shared Redis at %s (%s: %s), for up to %gs (%s)",
                        what,
                        self.safe_url,
                        type(exc).__name__,
                        redact_text(str(exc)),
                        seconds,
                        REDIS_WINDOW_ENV,
                    )
                time.sleep(delay)
                continue
            if self._down:
                self._recovered()
            return result

    def _unavailable(self, what: str, exc: BaseException, window: float) -> RedisUnavailable:
        why = f"{type(exc).__name__}: {redact_text(str(exc))}"
        if not is_transient_redis_error(exc):
            return RedisUnavailable(f"{what}: shared Redis at {self.safe_url} refused the request ({why})")
        return RedisUnavailable(f"{what}: shared Redis at {self.safe_url} did not answer for {window:g}s ({why})")

    def check(self) -> bool:
        """PING now (used at start, so an unreachable Redis is reported before the first item)."""
        ok, _ = self.run(lambda c: c.ping())
        return ok

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self._down = True
            self._retry_at = time.monotonic() + reconnect_seconds()
        _warn_once(self.safe_url, exc)

    def _recovered(self) -> None:
        with self._lock:
            if not self._down:
                return
            self._down = False
        log.info("shared Redis at %s is reachable again; using it for the cache and rate limits", self.safe_url)


_links: dict[tuple[int, str], RedisLink] = {}
_links_lock = threading.Lock()


def get_link(url: str) -> RedisLink:
    """The process's link to `url` (a forked child gets its own)."""
    key = (os.getpid(), url)
    with _links_lock:
        link = _links.get(key)
        if link is None:
            link = _links[key] = RedisLink(url)
        return link


def forget_links() -> None:
    """Drop every link and the warned-once flag (for tests that restart servers in-process)."""
    global _warned_pid
    with _links_lock:
        links = list(_links.values())
        _links.clear()
    for link in links:
        try:
            link.client.close()
        except Exception:  # noqa: BLE001 - closing a dead connection pool
            pass
    with _warn_lock:
        _warned_pid = None


__all__ = [
    "RedisLink",
    "get_link",
    "forget_links",
    "redact_url",
    "effective_redis_url",
    "is_transient_redis_error",
    "reconnect_seconds",
    "cache_key_prefix",
    "lock_key_prefix",
    "stats_key",
    "progress_key",
    "ratelimit_key",
    "RUN_KEYS_TTL_SECONDS",
]
