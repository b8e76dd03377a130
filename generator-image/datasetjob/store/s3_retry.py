"""S3 requests that wait out an outage of the server, through botocore's own retry hook.

botocore's standard retries give up within seconds of a refused connection, and count attempts,
not time. An S3Store's client instead answers botocore's `needs-retry` event itself: a request
that fails at the connection (refused, reset, timed out) or is told "not now" (HTTP 429/5xx,
SlowDown, RequestTimeout) is sent again with exponential backoff and jitter until
DSJ_S3_RETRY_SECONDS (120 s) have passed since its first failure; then botocore raises its
error as before. An answer that says "no" (403, 404, NoSuchBucket, a bad signature or key) is
never retried: waiting cannot change it. Retrying in the hook covers every request the client
makes, the parts of a multipart upload and the pages of a listing included, each in place.

Each process logs one line when an endpoint stops answering and one when it answers again,
never per retry; the endpoint is logged without credentials, and the keys never are.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

from datasetjob.redaction import redact_text
from datasetjob.retry_window import S3_WINDOW_ENV, next_delay, window_seconds

log = logging.getLogger("datasetjob.store")

CONNECT_TIMEOUT_SECONDS = 5  # an endpoint that does not even accept connections shows soon
READ_TIMEOUT_SECONDS = 60  # botocore's default: a large upload's last answer can take a while

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
    }
)
FIRST_FAILURE_KEY = "datasetjob.first_failure"  # in the request's context: when its window started


def is_transient_answer(status: int, code: str | None) -> bool:
    """An answer that means "not now" rather than "no". Pure."""
    return status in TRANSIENT_STATUSES or code in TRANSIENT_CODES


def is_transient_exception(exc: BaseException) -> bool:
    """No answer at all: refused, reset, or timed out on the way. A certificate the client
    refuses stays refused, so TLS errors are not retried."""
    from botocore.exceptions import ConnectionError, HTTPClientError, SSLError

    return isinstance(exc, ConnectionError | HTTPClientError) and not isinstance(exc, SSLError)


def transient_problem(response: tuple[Any, dict[str, Any]] | None, caught: BaseException | None) -> str | None:
    """What went wrong, when it is worth waiting out; None for a success or a lasting "no"."""
    if caught is not None:
        return f"{type(caught).__name__}: {caught}" if is_transient_exception(caught) else None
    if response is None:
        return None
    http, parsed = response
    error = parsed.get("Error") if isinstance(parsed, dict) else None
    code = error.get("Code") if isinstance(error, dict) else None
    status = int(getattr(http, "status_code", 0) or 0)
    if not is_transient_answer(status, code):
        return None
    return f"HTTP {status} {code or ''}".rstrip()


class Outage:
    """Whether an endpoint answers this process: one line when it stops, one when it is back."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self._since: float | None = None
        self._lock = threading.Lock()

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def began(self, problem: str, window: float) -> None:
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        log.warning(
            "S3 at %s is not answering (%s); retrying each request with backoff for up to %gs (%s)",
            self.endpoint,
            redact_text(problem),
            window,
            S3_WINDOW_ENV,
        )

    def ended(self) -> None:
        if not self.ongoing:  # the common case, without the lock
            return
        with self._lock:
            since, self._since = self._since, None
        if since is not None:  # another thread may have said so first
            log.info("S3 at %s answers again, after %.1fs", self.endpoint, time.monotonic() - since)


_outages: dict[str, Outage] = {}
_outages_lock = threading.Lock()


def outage_of(endpoint: str) -> Outage:
    """The process's one record of `endpoint`, shared by every client that talks to it."""
    with _outages_lock:
        found = _outages.get(endpoint)
        if found is None:
            found = _outages[endpoint] = Outage(endpoint)
        return found


class WaitOutOutages:
    """botocore's `needs-retry` hook: the seconds to wait before sending a request again, or
    None to let its outcome stand."""

    def __init__(self, outage: Outage, window: float):
        self.outage = outage
        self.window = window

    def __call__(
        self,
        response: tuple[Any, dict[str, Any]] | None = None,
        attempts: int = 1,
        caught_exception: BaseException | None = None,
        request_dict: dict[str, Any] | None = None,
        operation: Any = None,
        **_: Any,
    ) -> float | None:
        problem = transient_problem(response, caught_exception)
        if problem is None:
            if response is not None:  # the server answered, if only with "no"
                self.outage.ended()
            return None
        context = request_dict.setdefault("context", {}) if request_dict is not None else {}
        now = time.monotonic()
        first_failure: float = context.setdefault(FIRST_FAILURE_KEY, now)
        delay = next_delay(attempts, first_failure, now, self.window, random.random())
        if delay is not None:
            self.outage.began(problem, self.window)
        elif self.window > 0:  # a window of 0 retries nothing: botocore's error says it all
            log.error(
                "S3 at %s: %s still failing after %gs; giving up (%s)",
                self.outage.endpoint,
                getattr(operation, "name", "a request"),
                self.window,
                redact_text(problem),
            )
        return delay


def wait_out_outages(client: Any, window: float | None = None) -> None:
    """Every request of the S3 `client` waits out an outage for up to `window` seconds
    (default: DSJ_S3_RETRY_SECONDS, else 120). Its config must turn botocore's own retries off
    (`total_max_attempts: 1`), or both would retry."""
    seconds = window_seconds(S3_WINDOW_ENV) if window is None else window
    endpoint = redact_text(str(client.meta.endpoint_url))
    client.meta.events.register("needs-retry.s3", WaitOutOutages(outage_of(endpoint), seconds))


__all__ = [
    "CONNECT_TIMEOUT_SECONDS",
    "FIRST_FAILURE_KEY",
    "READ_TIMEOUT_SECONDS",
    "Outage",
    "WaitOutOutages",
    "is_transient_answer",
    "is_transient_exception",
    "outage_of",
    "transient_problem",
    "wait_out_outages",
]
