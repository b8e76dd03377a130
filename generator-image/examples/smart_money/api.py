"""A fake market-data API: deterministic values, a fixed latency per call (SMF_LATENCY_MS,
default 20 ms) and fault injection for demonstrations and tests:

  SMF_FAIL_RATIO=0.02        that share of examples raise (an item failure)
  SMF_FAIL_ITEMS=S:D,S:D     these examples raise (item failures)
  SMF_CRASH_ITEM=SYM:DATE    the worker process dies (exit 3) on that example (a shard failure);
  SMF_CRASH_ONCE_FILE=path   ... only while that file does not exist (it is created first)
  SMF_CALL_LOG=path          append the time of every upstream call to that file
  SMF_ITEM_LOG=path          append the id of every example generated (a generator call)
  SMF_TOKENS_PER_ITEM=100    report that usage per example (ctx.usage), e.g. to try spec.budget

Pods on a real node share no files, so the same two knobs also keep their state in Redis:

  SMF_SHARED_REDIS_URL=redis://...   where that shared state lives
  SMF_CRASH_ONCE_KEY=key             crash only if this key did not exist (it is set first)
  SMF_CALL_LOG_KEY=key               append the time of every upstream call to this list
  SMF_ITEM_LOG_KEY=key               append the id of every example generated to this list

Values are integers divided by powers of ten, and features use only + - * /, so the Node.js
twin (../smart_money_js) computes bit-identical numbers.
"""

import functools
import hashlib
import os
import time

import redis


def _latency() -> float:
    return float(os.environ.get("SMF_LATENCY_MS", "20")) / 1000.0


def _unit(*parts: str) -> int:
    """A deterministic integer in [0, 1_000_000) from the inputs."""
    digest = hashlib.sha256(":".join(parts).encode()).hexdigest()
    return int(digest[:8], 16) % 1_000_000


@functools.lru_cache(maxsize=1)
def _shared_redis():
    return redis.Redis.from_url(os.environ["SMF_SHARED_REDIS_URL"])


def _append_line(path: str, line: str) -> None:
    """One O_APPEND write: lines from concurrent processes never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def _log(knob: str, line: str) -> None:
    """Appends `line` where the knob points: the Redis list $knob_KEY and/or the file $knob."""
    key = os.environ.get(f"{knob}_KEY")
    if key:
        _shared_redis().rpush(key, line)
    path = os.environ.get(knob)
    if path:
        _append_line(path, line)


def record_item(symbol: str, date: str) -> None:
    """Count a generator call, for tests that check which items a run generated."""
    _log("SMF_ITEM_LOG", f"{symbol}:{date}")


def _call():
    _log("SMF_CALL_LOG", f"{time.time():.6f}")
    time.sleep(_latency())


def maybe_crash(symbol: str, date: str) -> None:
    if os.environ.get("SMF_CRASH_ITEM") != f"{symbol}:{date}":
        return
    once_key = os.environ.get("SMF_CRASH_ONCE_KEY")
    if once_key and not _shared_redis().set(once_key, 1, nx=True):
        return
    once = os.environ.get("SMF_CRASH_ONCE_FILE")
    if once:
        if os.path.exists(once):
            return
        open(once, "w").close()
    os._exit(3)


def price_history(symbol: str, dates: list[str]) -> list[float]:
    """Monthly closes of `symbol` on `dates` (one upstream call)."""
    _call()
    base = 20 + _unit("base", symbol) / 10_000
    return [base + _unit("close", symbol, d) / 100_000 for d in dates]


def market_data(date: str) -> dict:
    """Index return and volatility on `date` (one upstream call)."""
    _call()
    return {"market_return": (_unit("mkt", date) - 500_000) / 10_000_000, "vix": 10 + _unit("vix", date) / 40_000}


def institutional_flow(symbol: str, date: str) -> float:
    """Net institutional flow for one symbol-month (one upstream call)."""
    _call()
    ratio = float(os.environ.get("SMF_FAIL_RATIO", "0") or 0)
    failing = f"{symbol}:{date}" in os.environ.get("SMF_FAIL_ITEMS", "").split(",")
    if failing or (ratio and _unit("fail", symbol, date) < ratio * 1_000_000):
        raise ConnectionError(f"upstream returned 502 for flow {symbol} {date}")
    return (_unit("flow", symbol, date) - 500_000) / 1_000
