"""The shared cache of a cluster: Redis, used by every pod of every DatasetJob that names it.

Keys (named in datasetjob.redis_link)
----
dsj:cache:{namespace}:{key}        the value, JSON text (never pickle), with the TTL
dsj:lock:{namespace}:{key}         single-flight lock: SET NX PX, owned by a random token,
                                   renewed while its holder computes, so a killed pod's lock
                                   expires within seconds
dsj:stats:{namespace}:{runId}      hash: hits / misses of the run (HINCRBY)

Single-flight: a lookup is one Lua script (redis_scripts) that returns the value, or takes the
lock, or says "someone else is computing". Waiters poll with a short growing delay (a few ms at
first), and compute for themselves when the lock disappears without a value (the holder
failed) or after `wait_timeout` seconds.

Values a process has read are also kept in a small in-process table (L1_ENTRIES, at most
L1_SECONDS and never past the call's TTL) as JSON text, decoded afresh on every hit: a shard
asks for the same few keys (a symbol's history, a date's market data) over and over, and
those repeats cost no round trip. Hits served there are added to the run's counters with
the next lookup or progress publish.

Degradation: if Redis is unreachable at start or lost mid-run, the link (redis_link) logs ONE
warning, lookups compute directly (counted as misses, except repeats the in-process table
serves), and Redis is tried again every DSJ_REDIS_RECONNECT_SECONDS (30 s).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import redis

from datasetjob.cache.base import Cache
from datasetjob.cache.redis_scripts import FILL, LOOKUP, RELEASE, RENEW
from datasetjob.cache.values import decode_value, encode_value
from datasetjob.redis_link import RUN_KEYS_TTL_SECONDS, cache_key_prefix, get_link, lock_key_prefix, stats_key

log = logging.getLogger("datasetjob.cache")

LOCK_MS = 10_000  # single-flight lock lifetime; renewed every LOCK_MS / 3
SINGLE_FLIGHT_TIMEOUT_SECONDS = 120.0  # a waiter computes for itself after this long
POLL_MIN_SECONDS = 0.002
POLL_MAX_SECONDS = 0.025
L1_ENTRIES = 4096  # values kept in-process per cache
L1_SECONDS = 60.0


class RedisCache(Cache):
    """`Cache` backed by Redis: shared by every pod, single-flight across pods.

    RedisCache(url, namespace, default_ttl, run_id)
      url          redis://[:password@]host:port/db, or rediss:// for TLS
      namespace    key prefix (spec.cache.namespace, default <namespace>.<name> of the DatasetJob,
                   see spec.cache_namespace)
      default_ttl  seconds a value lives (None or 0: forever)
      run_id       counts hits/misses of this run in dsj:stats:{namespace}:{run_id}
      local_entries  size of the in-process table of values already read (0: none)
    """

    def __init__(
        self,
        url: str,
        namespace: str = "default",
        default_ttl: int | None = None,
        run_id: str | None = None,
        *,
        lock_ms: int = LOCK_MS,
        wait_timeout: float = SINGLE_FLIGHT_TIMEOUT_SECONDS,
        local_entries: int = L1_ENTRIES,
    ):
        self.url = url
        self.namespace = namespace
        self.default_ttl = default_ttl
        self.run_id = run_id
        self.lock_ms = int(lock_ms)
        self.wait_timeout = float(wait_timeout)
        self.local_entries = max(0, int(local_entries))
        self.link = get_link(url)
        self._prefix = cache_key_prefix(namespace)
        self._lock_prefix = lock_key_prefix(namespace)
        self._stats_key = stats_key(namespace, run_id) if run_id else None
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
        ok, stored = self.link.run(lambda c: c.get(self.value_key(key)))
        if not ok or stored is None:
            return False, None
        found, value = self._decoded(key, stored)
        if found:
            self._l1_put(key, stored, self._ttl(None))
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
        for key, text in zip(keys, texts or (), strict=False):
            if text is not None:
                found, value = self._decoded(key, text)
                if found:
                    out[key] = value
        return out

    def set_many(self, values: dict[str, Any], ttl: int | None = None) -> None:
        """Store several values in one pipelined round trip."""
        encoded = {self.value_key(k): encode_value(k, v) for k, v in values.items()}
        seconds = self._ttl(ttl)

        def op(c: redis.Redis) -> None:
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
        stats = self._stats_key
        if not pending or not stats:
            return

        def op(c: redis.Redis) -> None:
            pipe = c.pipeline(transaction=False)
            pipe.hincrby(stats, "hits", pending)
            pipe.expire(stats, RUN_KEYS_TTL_SECONDS)
            pipe.execute()

        self.link.run(op)

    def _decoded(self, key: str, text: bytes | str) -> tuple[bool, Any]:
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
            args: list[str | int] = [token, self.lock_ms, RUN_KEYS_TTL_SECONDS, pending]
            ok, reply = self.link.run(lambda c: self._lookup(keys=keys, args=args))
            if not ok:
                return self._compute_direct(key, fn, ttl), False
            assert reply is not None  # the script always answers a list
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
                log.warning(
                    "cache key %r: still being computed elsewhere after %.0fs; computing it here",
                    key,
                    self.wait_timeout,
                )
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
        args: list[str | int] = [text, seconds, token or "", RUN_KEYS_TTL_SECONDS]
        self._l1_put(key, text, seconds)
        self.link.run(lambda c: self._fill(keys=keys, args=args))
        return value

    # -- lock renewal ----------------------------------------------------------------------------
    def _hold(self, lock: str, token: str) -> None:
        with self._held_lock:
            self._held[lock] = token
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=self._renew_loop, name="dsj-cache-lock-renewer", daemon=True)
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

            def op(c: redis.Redis) -> None:
                pipe = c.pipeline(transaction=False)
                for lock, token in held:
                    self._renew(keys=[lock], args=[token, self.lock_ms], client=pipe)
                pipe.execute()

            self.link.run(op)

    def close(self) -> None:
        self._closing.set()
        self.flush_stats()
        with self._held_lock:
            held = list(self._held.items())
            self._held.clear()
        for lock, token in held:
            self.link.run(lambda c: self._release(keys=[lock], args=[token]))  # run calls it at once


__all__ = ["RedisCache"]
