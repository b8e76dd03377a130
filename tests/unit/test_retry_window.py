"""The retry window for a shared service that went away: the backoff, the window's end, which
S3 and Redis errors are worth waiting out, and the spend ledger's floors. The servers
themselves are in tests/integration/test_outages.py."""

from __future__ import annotations

import logging
import time

import pytest
import redis
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError, SSLError
from hypothesis import given
from hypothesis import strategies as st

from datasetjob.redis_link import is_transient_redis_error
from datasetjob.retry_window import (
    DEFAULT_WINDOW_SECONDS,
    FIRST_DELAY_SECONDS,
    MAX_DELAY_SECONDS,
    S3_WINDOW_ENV,
    backoff_delay,
    next_delay,
    window_seconds,
)
from datasetjob.store.s3_retry import FIRST_FAILURE_KEY, Outage, WaitOutOutages, is_transient_answer, transient_problem
from datasetjob.worker.spend import FLOOR_MARGIN, spend_args


def test_the_backoff_doubles_up_to_its_cap_and_jitter_takes_at_most_half():
    ceilings = [backoff_delay(attempt, jitter=0.0) for attempt in range(1, 10)]
    assert ceilings[:4] == pytest.approx([FIRST_DELAY_SECONDS * 2**k for k in range(4)])
    assert max(ceilings) == MAX_DELAY_SECONDS == ceilings[-1]
    assert backoff_delay(3, jitter=0.999) == pytest.approx(backoff_delay(3, jitter=0.0) / 2, rel=1e-2)
    assert backoff_delay(10_000, jitter=0.5) == MAX_DELAY_SECONDS * 0.75  # no overflow, however long


@given(
    attempt=st.integers(1, 200),
    first=st.floats(0, 1e6),
    elapsed=st.floats(0, 500),
    window=st.floats(0, 300),
    jitter=st.floats(0, 0.999),
)
def test_a_pause_never_runs_past_the_window(attempt, first, elapsed, window, jitter):
    now, end = first + elapsed, first + window
    delay = next_delay(attempt, first, now, window, jitter)
    if now >= end:
        assert delay is None
    else:
        assert delay is not None and 0 < delay <= min(MAX_DELAY_SECONDS, end - now)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, DEFAULT_WINDOW_SECONDS), ("5", 5.0), ("0.5", 0.5), ("0", 0.0), ("soon", 120.0), ("-3", 120.0)],
)
def test_the_window_comes_from_the_environment(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv(S3_WINDOW_ENV, raising=False)
    else:
        monkeypatch.setenv(S3_WINDOW_ENV, value)
    assert window_seconds(S3_WINDOW_ENV) == expected


@pytest.mark.parametrize(
    ("status", "code", "transient"),
    [
        (503, "SlowDown", True),
        (500, "InternalError", True),
        (502, None, True),
        (400, "RequestTimeout", True),
        (429, None, True),
        (403, "AccessDenied", False),
        (403, "SignatureDoesNotMatch", False),
        (403, "InvalidAccessKeyId", False),
        (404, "NoSuchBucket", False),
        (404, "NoSuchKey", False),
        (412, "PreconditionFailed", False),
        (200, None, False),
    ],
)
def test_only_answers_that_mean_not_now_are_waited_out(status, code, transient):
    assert is_transient_answer(status, code) is transient


class Answer:
    """An HTTP answer as botocore hands it to the needs-retry hook: what has a status code."""

    def __init__(self, status_code: int):
        self.status_code = status_code


def answer(status: int, code: str | None = None) -> tuple[Answer, dict]:
    return Answer(status), ({"Error": {"Code": code}} if code else {})


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="http://s3:9000/b/k"),
        ConnectTimeoutError(endpoint_url="http://s3:9000/b/k"),
        ReadTimeoutError(endpoint_url="http://s3:9000/b/k"),
    ],
)
def test_no_answer_at_all_is_waited_out_but_a_refused_certificate_is_not(exc):
    assert transient_problem(None, exc) is not None
    assert transient_problem(None, SSLError(endpoint_url="https://s3", error="certificate verify failed")) is None


def test_the_hook_waits_within_the_window_and_logs_one_line_each_way(caplog):
    caplog.set_level(logging.INFO, logger="datasetjob.store")
    hook = WaitOutOutages(Outage("http://s3:9000"), window=60.0)
    request: dict = {"context": {}}
    refused = EndpointConnectionError(endpoint_url="http://s3:9000/b/k")
    delays = [hook(None, attempts=n, caught_exception=refused, request_dict=request) for n in (1, 2, 3)]
    assert all(d is not None and 0 < d <= MAX_DELAY_SECONDS for d in delays)
    assert hook(answer(503, "SlowDown"), attempts=4, request_dict=request) is not None
    assert hook(answer(200), attempts=5, request_dict=request) is None
    assert hook(answer(200), attempts=1, request_dict={"context": {}}) is None
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and "is not answering" in said[0] and "answers again" in said[1]


def test_the_hook_lets_a_no_stand_and_gives_up_at_the_end_of_its_window(caplog):
    hook = WaitOutOutages(Outage("http://s3:9001"), window=60.0)
    refused = EndpointConnectionError(endpoint_url="http://s3:9001/b/k")
    long_ago = {"context": {FIRST_FAILURE_KEY: time.monotonic() - 61.0}}
    assert hook(None, attempts=9, caught_exception=refused, request_dict=long_ago) is None
    assert "still failing after 60s; giving up" in caplog.text
    caplog.clear()
    assert WaitOutOutages(Outage("http://s3:9003"), window=0.0)(None, 1, refused, {"context": {}}) is None
    assert caplog.text == ""  # no retry, nothing to say beyond botocore's error
    patient = WaitOutOutages(Outage("http://s3:9002"), window=120.0)
    assert patient(answer(404, "NoSuchBucket"), attempts=1, request_dict={"context": {}}) is None
    assert patient(answer(403, "InvalidAccessKeyId"), attempts=1, request_dict={"context": {}}) is None


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (redis.ConnectionError("Error 111 connecting"), True),
        (redis.TimeoutError("Timeout reading from socket"), True),
        (redis.BusyLoadingError("Redis is loading the dataset in memory"), True),
        (ConnectionResetError(104, "reset"), True),
        (redis.AuthenticationError("invalid username-password pair"), False),
        (redis.exceptions.AuthorizationError("not authorized"), False),
        (redis.ResponseError("WRONGTYPE"), False),
    ],
)
def test_redis_errors_worth_waiting_out(exc, transient):
    assert is_transient_redis_error(exc) is transient


def test_the_ledger_floor_is_the_last_total_seen_plus_the_delta_less_a_rounding_margin():
    unsent = {"requests": 1.0, "tokens": 100.0, "cost": 0.0}
    args = spend_args(60, unsent, {"requests": 9.0, "tokens": 900.0, "cost": 0.0})
    assert args[0] == 60
    triples = {args[i]: (float(args[i + 1]), float(args[i + 2])) for i in range(1, len(args), 3)}
    assert triples["tokens"] == (100.0, pytest.approx(1000.0 * (1 - FLOOR_MARGIN)))
    assert triples["requests"][1] < 10.0 and triples["cost"] == (0.0, 0.0)
