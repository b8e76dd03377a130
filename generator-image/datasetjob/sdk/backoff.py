"""Backing off when an upstream says "slow down": `retry_upstream`, `Throttled`, `is_throttled`.

Part of the generator SDK (exported as `datasetjob.retry_upstream` and `datasetjob.Throttled`);
`ctx.retry` is `retry_upstream` under the worker's rate limit. No rate-limit state here: a
throttle is reported through `on_throttle`, by default to the item context of the calling
thread, which pauses and slows the whole scope (shared back-pressure).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from datasetjob.errors import DatasetJobError

T = TypeVar("T")

log = logging.getLogger("datasetjob.generator")

RETRY_STATUSES = frozenset({429, 503})


class Throttled(DatasetJobError):
    """Raise from a generator's client code when the upstream says "slow down" in a way
    `retry_upstream` cannot see on its own (e.g. an error payload inside a 200 response)."""

    def __init__(
        self, message: str = "upstream throttled the request", retry_after: float | None = None, status: int = 429
    ):
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
            import email.utils  # an HTTP date: rare, and the email package costs every worker ~8 ms

            try:
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, when.timestamp() - time.time())
            except (TypeError, ValueError):
                return None
    return None


def is_throttled(exc: BaseException) -> bool:
    """True for Throttled and for exceptions carrying HTTP 429 or 503."""
    return isinstance(exc, Throttled) or _status_of(exc) in RETRY_STATUSES


ThrottleReporter = Callable[[BaseException, float | None], None]
# Where throttles go when the caller names no `on_throttle`: set by the item context (sdk.context)
# to report to the scope of the calling thread's item; None outside a worker.
_default_reporter: list[ThrottleReporter] = []


def report_throttles_to(reporter: ThrottleReporter) -> None:
    _default_reporter[:] = [reporter]


def report_throttle(exc: BaseException, on_throttle: ThrottleReporter | None = None) -> None:
    """Tell the scope about a throttle (once per exception, however many layers see it)."""
    if getattr(exc, "_dsj_reported", False):
        return
    reporter = on_throttle or (_default_reporter[0] if _default_reporter else None)
    if reporter is None:
        return
    try:
        exc._dsj_reported = True  # type: ignore[attr-defined]
    except AttributeError:
        pass  # an exception type without a __dict__: reported again by an outer layer, at worst
    reporter(exc, _retry_after_of(exc))


def retry_upstream(
    fn: Callable[[], T],
    *,
    attempts: int = 5,
    base_delay: float = 0.5,
    max_delay: float = 30.0,
    retryable: Callable[[BaseException], bool] = is_throttled,
    before_retry: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_throttle: ThrottleReporter | None = None,
) -> T:
    """Call `fn()`; when the upstream answers 429/503, back off and call again.

    Back-off is "full jitter": before retry k (1, 2, ...) sleep a uniform random time in
    [0, min(max_delay, base_delay * 2**(k-1))], or the upstream's Retry-After if that is
    longer (capped at max_delay). After `attempts` calls the last error propagates, as does
    any error `retryable` rejects (by default everything but Throttled and HTTP 429/503,
    recognised on requests, httpx, urllib, aiohttp and botocore exceptions).

    `before_retry` runs before each retry (ctx.retry uses it to take a rate-limit token).
    Each throttle (Throttled, 429, 503) goes to `on_throttle(exc, retry_after)`, by default the
    scope of the calling thread's item in a worker: every worker of the scope then waits out the
    Retry-After and the scope's rates drop (shared back-pressure).
    """
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - filtered by `retryable`
            if is_throttled(exc):
                report_throttle(exc, on_throttle)
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


__all__ = ["RETRY_STATUSES", "Throttled", "is_throttled", "report_throttle", "report_throttles_to", "retry_upstream"]
