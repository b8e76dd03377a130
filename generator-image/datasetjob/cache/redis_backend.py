"""The shared cache of a cluster: Redis, used by every pod of every DatasetJob that names it.

Keys
----
dsj:cache:{namespace}:{key}        the value, JSON text (never pickle), with the TTL
dsj:lock:{namespace}:{key}         single-flight lock: SET NX PX, owned by a random token,
                                   renewed while its holder computes, so a killed pod's lock
                                   expires within seconds
dsj:stats:{namespace}:{runId}      hash: hits / misses of the run (HINCRBY)
dsj:progress:{namespace}:{runId}   hash: shard index -> the shard's latest progress snapshot

Single-flight: a lookup is one Lua script that returns the value, or takes the lock, or says
"someone else is computing". Waiters poll with a short growing delay (a few ms at first),
and compute for themselves when the lock disappears without a value (the holder failed) or
after `wait_timeout` seconds.

Values a process has read are also kept in a small in-process table (L1_ENTRIES, at most
L1_SECONDS and never past the call's TTL) as JSON text, decoded afresh on every hit: a shard
asks for the same few keys (a symbol's history, a date's market data) over and over, and
those repeats cost no round trip. Hits served there are added to the run's counters with
the next lookup or progress publish.

Degradation: Redis is a speed-up, never a single point of failure. If it is unreachable at
start or lost mid-run, the process logs ONE warning, computes directly (lookups count as
misses, except repeats the in-process table serves), and tries Redis again every
DSJ_REDIS_RECONNECT_SECONDS (30 s).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .values import CacheValueError, decode_value, encode_value

log = logging.getLogger("datasetjob.cache")

T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 2.0
COMMAND_TIMEOUT_SECONDS = 5.0
LOCK_MS = 10_000                      # single-flight lock lifetime; renewed every LOCK_MS / 3
SINGLE_FLIGHT_TIMEOUT_SECONDS = 120.0  # a waiter computes for itself after this long
POLL_MIN_SECONDS = 0.002
POLL_MAX_SECONDS = 0.025
RUN_KEYS_TTL_SECONDS = 7 * 86400      # stats and progress hashes of a run
L1_ENTRIES = 4096                     # values kept in-process per cache
L1_SECONDS = 60.0


def reconnect_seconds() -> float:
    return float(os.environ.get("DSJ_REDIS_RECONNECT_SECONDS", "30"))


def redact_url(url: str) -> str:
    """The URL without its password, for logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable redis url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


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
        "this warning is shown once.", safe_url, type(exc).__name__, exc, reconnect_seconds())


class RedisLink:
    """One redis-py client per URL per process, and whether that Redis is usable right now.

    Shared by the cache, the rate limiter and the progress sink of a worker, so a lost Redis
    costs one connection attempt per DSJ_REDIS_RECONNECT_SECONDS, not one per lookup.
    """

    def __init__(self, url: str):
        self.url = url
        self.safe_url = redact_url(url)
        self.client = redis.Redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS, socket_timeout=COMMAND_TIMEOUT_SECONDS,
            # one quick retry covers a pooled connection the server closed; more would stall
            # every in-flight item when Redis is really gone
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.02), 1), client_name="datasetjob")
        self._lock = threading.Lock()
        self._down = False
        self._retry_at = 0.0
        self._scripts: dict[str, Any] = {}

    @property
    def down(self) -> bool:
        return self._down

    def usable(self) -> bool:
        return not self._down or time.monotonic() >= self._retry_at

    def script(self, lua: str):
        found = self._scripts.get(lua)
        if found is None:
            found = self._scripts[lua] = self.client.register_script(lua)
        return found

    def run(self, op: Callable[[redis.Redis], T]) -> tuple[bool, T | None]:
        """(True, result) or (False, None) when Redis is down (now or in its back-off window)."""
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


# --------------------------------------------------------------------------------- scripts

# KEYS: value, lock[, stats]   ARGV: token, lock_ms, stats_ttl, earlier hits to add
# -> {1, value} hit | {2} we hold the lock, compute | {0} another caller is computing
LOOKUP = """
local v = redis.call('GET', KEYS[1])
if #KEYS > 2 then
  local hits = tonumber(ARGV[4])
  if v then
    hits = hits + 1
  end
  if hits > 0 then
    redis.call('HINCRBY', KEYS[3], 'hits', hits)
    redis.call('EXPIRE', KEYS[3], ARGV[3])
  end
end
if v then
  return {1, v}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {2}
end
return {0}
"""

# KEYS: value, lock[, stats]   ARGV: json, ttl_seconds (0 = none), token, stats_ttl
FILL = """
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
if redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
if #KEYS > 2 then
  redis.call('HINCRBY', KEYS[3], 'misses', 1)
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return 1
"""

# KEYS: lock   ARGV: token
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: lock   ARGV: token, lock_ms
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


# --------------------------------------------------------------------------------- the cache


class RedisCache:
    """`Cache` backed by Redis: shared by every pod, single-flight across pods.

    RedisCache(url, namespace, default_ttl, run_id)
      url          redis://[:password@]host:port/db, or rediss:// for TLS
      namespace    key prefix (spec.cache.namespace, default <namespace>.<name> of the DatasetJob, see spec.cache_namespace)
      default_ttl  seconds a value lives (None or 0: forever)
      run_id       counts hits/misses of this run in dsj:stats:{namespace}:{run_id}
      local_entries  size of the in-process table of values already read (0: none)
    """

    def __init__(self, url: str, namespace: str = "default", default_ttl: int | None = None,
                 run_id: str | None = None, *, lock_ms: int = LOCK_MS,
                 wait_timeout: float = SINGLE_FLIGHT_TIMEOUT_SECONDS, local_entries: int = L1_ENTRIES):
        self.url = url
        self.namespace = namespace
        self.default_ttl = default_ttl
        self.run_id = run_id
        self.lock_ms = int(lock_ms)
        self.wait_timeout = float(wait_timeout)
        self.local_entries = max(0, int(local_entries))
        self.link = get_link(url)
        self._prefix = f"dsj:cache:{namespace}:"
        self._lock_prefix = f"dsj:lock:{namespace}:"
        self._stats_key = f"dsj:stats:{namespace}:{run_id}" if run_id else None
        self._lookup = self.link.script(LOOKUP)
        self._fill = self.link.script(FILL)
        self._release = self.link.script(RELEASE)
        self._renew = self.link.script(RENEW)
        self._held: dict[str, str] = {}  # lock key -> token, renewed by the renewer thread
        self._l1: OrderedDict[str, tuple[float, str]] = OrderedDict()  # key -> (expires, json)
        self._l1_lock = threading.Lock()
        self._pending_hits = 0  # L1 hits not yet added to the run's counters
        self._held_lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._closing = threading.Event()
        self.link.check()

    # -- keys ---------------------------------------------------------------------------------
    def value_key(self, key: str) -> str:
        return self._prefix + key

    def lock_key(self, key: str) -> str:
        return self._lock_prefix + key

    @property
    def stats_key(self) -> str | None:
        return self._stats_key

    def _ttl(self, ttl: int | None) -> int:
        ttl = self.default_ttl if ttl is None else ttl
        return int(ttl) if ttl and ttl > 0 else 0

    def _keys(self, key: str) -> list[str]:
        keys = [self.value_key(key), self.lock_key(key)]
        if self._stats_key:
            keys.append(self._stats_key)
        return keys

    # -- plain get / set -------------------------------------------------------------------------
    def get(self, key: str) -> tuple[bool, Any]:
        text = self._l1_get(key)
        if text is not None:
            return True, decode_value(text)
        ok, text = self.link.run(lambda c: c.get(self.value_key(key)))
        if not ok or text is None:
            return False, None
        found, value = self._decoded(key, text)
        if found:
            self._l1_put(key, text, self._ttl(None))
        return found, value

    def set(self, key: str, value: Any, ttl: int | None = None) -> None:
        text = encode_value(key, value)
        seconds = self._ttl(ttl)
        self._l1_put(key, text, seconds)
        self.link.run(lambda c: c.set(self.value_key(key), text, ex=seconds or None))

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """The found values of `keys`, in one round trip (MGET). Not counted as hits/misses."""
        if not keys:
            return {}
        ok, texts = self.link.run(lambda c: c.mget([self.value_key(k) for k in keys]))
        out: dict[str, Any] = {}
        for key, text in zip(keys, texts or ()):
            if text is not None:
                found, value = self._decoded(key, text)
                if found:
                    out[key] = value
        return out

    def set_many(self, values: dict[str, Any], ttl: int | None = None) -> None:
        """Store several values in one pipelined round trip."""
        encoded = {self.value_key(k): encode_value(k, v) for k, v in values.items()}
        seconds = self._ttl(ttl)

        def op(c):
            pipe = c.pipeline(transaction=False)
            for full, text in encoded.items():
                pipe.set(full, text, ex=seconds or None)
            pipe.execute()

        if encoded:
            self.link.run(op)

    # -- the in-process table -----------------------------------------------------------------
    def _l1_get(self, key: str) -> str | None:
        with self._l1_lock:
            entry = self._l1.get(key)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._l1[key]
                return None
            self._l1.move_to_end(key)
            return entry[1]

    def _l1_put(self, key: str, text: bytes | str, ttl_seconds: int) -> None:
        if not self.local_entries:
            return
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        life = min(L1_SECONDS, ttl_seconds) if ttl_seconds else L1_SECONDS
        with self._l1_lock:
            self._l1[key] = (time.monotonic() + life, text)
            self._l1.move_to_end(key)
            while len(self._l1) > self.local_entries:
                self._l1.popitem(last=False)

    def _take_pending_hits(self) -> int:
        with self._l1_lock:
            pending, self._pending_hits = self._pending_hits, 0
            return pending

    def flush_stats(self) -> None:
        """Add hits served in-process to the run's counters now (lookups do it as they go)."""
        pending = self._take_pending_hits()
        if not pending or not self._stats_key:
            return

        def op(c):
            pipe = c.pipeline(transaction=False)
            pipe.hincrby(self._stats_key, "hits", pending)
            pipe.expire(self._stats_key, RUN_KEYS_TTL_SECONDS)
            pipe.execute()

        self.link.run(op)

    def _decoded(self, key: str, text: bytes) -> tuple[bool, Any]:
        try:
            return True, decode_value(text.decode("utf-8") if isinstance(text, bytes) else text)
        except (UnicodeDecodeError, ValueError):
            log.warning("cache key %r: stored value is not JSON; treating it as a miss", key)
            return False, None

    # -- get-or-compute --------------------------------------------------------------------------
    def get_or_compute(self, key: str, fn: Callable[[], Any], ttl: int | None = None) -> tuple[Any, bool]:
        """(value, hit). On a miss exactly one caller across pods runs `fn`; the others wait."""
        text = self._l1_get(key)
        if text is not None:
            with self._l1_lock:
                self._pending_hits += 1
            return decode_value(text), True
        token = uuid.uuid4().hex
        keys = self._keys(key)
        deadline: float | None = None
        delay = POLL_MIN_SECONDS
        while True:
            pending = self._take_pending_hits() if self._stats_key else 0
            args = [token, self.lock_ms, RUN_KEYS_TTL_SECONDS, pending]
            ok, reply = self.link.run(lambda c: self._lookup(keys=keys, args=args))
            if not ok:
                return self._compute_direct(key, fn, ttl), False
            status = int(reply[0])
            if status == 1:
                found, value = self._decoded(key, reply[1])
                if found:
                    self._l1_put(key, reply[1], self._ttl(ttl))
                    return value, True
                return self._compute_and_store(key, fn, ttl, token=None), False
            if status == 2:
                return self._compute_and_store(key, fn, ttl, token=token), False
            now = time.monotonic()
            if deadline is None:
                deadline = now + self.wait_timeout
            elif now >= deadline:
                log.warning("cache key %r: still being computed elsewhere after %.0fs; computing it here",
                            key, self.wait_timeout)
                return self._compute_and_store(key, fn, ttl, token=None), False
            time.sleep(delay)
            delay = min(delay * 1.5, POLL_MAX_SECONDS)

    def _compute_direct(self, key: str, fn: Callable[[], Any], ttl: int | None) -> Any:
        """Redis is unavailable: compute here; the in-process table still serves repeats."""
        value = fn()
        self._l1_put(key, encode_value(key, value), self._ttl(ttl))  # same contract without Redis
        return value

    def _compute_and_store(self, key: str, fn: Callable[[], Any], ttl: int | None, token: str | None) -> Any:
        lock = self.lock_key(key)
        if token is not None:
            self._hold(lock, token)
        try:
            value = fn()
            text = encode_value(key, value)
        except BaseException:
            if token is not None:
                self._unhold(lock)
                self.link.run(lambda c: self._release(keys=[lock], args=[token]))
            raise
        if token is not None:
            self._unhold(lock)
        keys = self._keys(key)
        seconds = self._ttl(ttl)
        args = [text, seconds, token or "", RUN_KEYS_TTL_SECONDS]
        self._l1_put(key, text, seconds)
        self.link.run(lambda c: self._fill(keys=keys, args=args))
        return value

    # -- lock renewal ----------------------------------------------------------------------------
    def _hold(self, lock: str, token: str) -> None:
        with self._held_lock:
            self._held[lock] = token
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=self._renew_loop, name="dsj-cache-lock-renewer",
                                                 daemon=True)
                self._renewer.start()

    def _unhold(self, lock: str) -> None:
        with self._held_lock:
            self._held.pop(lock, None)

    def _renew_loop(self) -> None:
        while not self._closing.wait(self.lock_ms / 3000.0):
            with self._held_lock:
                held = list(self._held.items())
            if not held:
                continue

            def op(c):
                pipe = c.pipeline(transaction=False)
                for lock, token in held:
                    self._renew(keys=[lock], args=[token, self.lock_ms], client=pipe)
                pipe.execute()

            self.link.run(op)

    # -- progress --------------------------------------------------------------------------------
    def progress_sink(self, run_id: str, index: int, fallback=None) -> "RedisProgress":
        """Where the worker publishes its live progress: Redis (for the operator) and `fallback`."""
        return RedisProgress(self.link, progress_key(self.namespace, run_id), index, fallback,
                             on_publish=self.flush_stats)

    def close(self) -> None:
        self._closing.set()
        self.flush_stats()
        with self._held_lock:
            held = list(self._held.items())
            self._held.clear()
        for lock, token in held:
            self.link.run(lambda c, lock=lock, token=token: self._release(keys=[lock], args=[token]))


def progress_key(namespace: str, run_id: str) -> str:
    return f"dsj:progress:{namespace}:{run_id}"


def stats_key(namespace: str, run_id: str) -> str:
    return f"dsj:stats:{namespace}:{run_id}"


class RedisProgress:
    """Stores a shard's latest snapshot in the run's progress hash (field = shard index) and
    passes it on to `fallback` (the local file progress), which always gets it."""

    def __init__(self, link: RedisLink, key: str, index: int, fallback=None, on_publish=None):
        self.link = link
        self.key = key
        self.index = int(index)
        self.fallback = fallback
        self.on_publish = on_publish

    def publish(self, snapshot: dict) -> None:
        if self.fallback is not None:
            self.fallback.publish(snapshot)
        text = json.dumps(dict(snapshot, updatedAt=time.time()), separators=(",", ":"))

        def op(c):
            pipe = c.pipeline(transaction=False)
            pipe.hset(self.key, str(self.index), text)
            pipe.expire(self.key, RUN_KEYS_TTL_SECONDS)
            pipe.execute()

        self.link.run(op)
        if self.on_publish is not None:
            self.on_publish()


__all__ = ["RedisCache", "RedisLink", "RedisProgress", "CacheValueError", "get_link", "forget_links",
           "progress_key", "stats_key", "redact_url"]
