"""What the operator remembers about each DatasetJob between reconciles, until it is deleted.

Kopf hands every reconcile a fresh body, so a few things live here instead: a lock per object
(a timer and a change handler may overlap), the phase an object is in and since when (for the
phase duration metric), and three reads of the API server reused for a while: the item list of
spec.items.fromConfigMap, Kueue's pending reasons in a namespace, and whether the credentials
Secret of a run about to start exists. Those reads are shared by every DatasetJob that reads
the same key, and dropped with the last one that reads it.

`forget` drops everything about one object, so memory follows the DatasetJobs that exist,
not every DatasetJob ever seen. No I/O here: the reads are callables handed in.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from .status import Phase

V = TypeVar("V")
_MISSING: Any = object()


@dataclass
class _SharedReads:
    """Values read from the API server, each reused for `ttl` seconds by whoever reads its key.
    An object reads one key at a time (one ConfigMap, one namespace); a value stays only while
    some object reads its key."""

    ttl: float
    values: dict[Hashable, tuple[float, Any]] = field(default_factory=dict)  # key -> (read at, value)
    key_of: dict[str, Hashable] = field(default_factory=dict)  # uid -> the key it reads
    readers: dict[Hashable, set[str]] = field(default_factory=dict)  # key -> uids reading it

    def attach(self, uid: str, key: Hashable) -> None:
        if self.key_of.get(uid, _MISSING) == key:
            return
        self.detach(uid)  # the spec now names another ConfigMap: the old value may go
        self.key_of[uid] = key
        self.readers.setdefault(key, set()).add(uid)

    def detach(self, uid: str) -> None:
        key = self.key_of.pop(uid, _MISSING)
        if key is _MISSING:
            return
        readers = self.readers[key]
        readers.discard(uid)
        if not readers:
            del self.readers[key]
            self.values.pop(key, None)

    def fresh(self, key: Hashable, now: float) -> Any:
        read_at, value = self.values.get(key, (None, _MISSING))
        return value if read_at is not None and now - read_at <= self.ttl else _MISSING

    def store(self, key: Hashable, value: Any, now: float) -> None:
        if key in self.readers:  # nobody reads it any more (forgotten meanwhile): keep nothing
            self.values[key] = (now, value)

    def __len__(self) -> int:
        return len(self.values) + len(self.key_of) + len(self.readers)


class ObjectMemory:
    """Per-DatasetJob state kept between reconciles; the operator's startup handler owns the one
    instance, the reconcile handler uses it, the delete handler calls `forget`."""

    def __init__(
        self,
        config_map_ttl: float,
        admission_ttl: float,
        clock: Callable[[], float] = time.monotonic,
        secret_ttl: float | None = None,
    ):
        self._clock = clock
        self._guard = threading.Lock()  # the tables below are shared by Kopf's worker threads
        self._locks: dict[str, threading.Lock] = {}
        self._phase_since: dict[str, tuple[Phase | None, float]] = {}
        self._config_maps = _SharedReads(config_map_ttl)
        self._admission = _SharedReads(admission_ttl)
        self._secrets = _SharedReads(admission_ttl if secret_ttl is None else secret_ttl)

    def lock(self, uid: str) -> threading.Lock:
        """One reconcile per object at a time: held while observing, deciding and applying."""
        with self._guard:
            return self._locks.setdefault(uid, threading.Lock())

    def enter_phase(self, uid: str, phase: Phase | None) -> tuple[Phase | None, float] | None:
        """Notes that the object is in `phase` from now on. Returns the phase it left and the
        seconds it spent there, or None when it was not in another phase before."""
        now = self._clock()
        with self._guard:
            previous = self._phase_since.get(uid)
            if uid in self._locks:  # not forgotten while this reconcile waited for the lock
                self._phase_since[uid] = (phase, now)
        if previous and previous[0] != phase:
            return previous[0], now - previous[1]
        return None

    def config_map_items(self, uid: str, namespace: str, name: str, key: str, read: Callable[[], V]) -> V:
        """The text under `key` of ConfigMap namespace/name: `read()` once per time-to-live."""
        return self._shared_read(self._config_maps, uid, (namespace, name, key), read)

    def admission(self, uid: str, namespace: str, read: Callable[[], V]) -> V:
        """Kueue's pending reasons in a namespace: `read()` once per time-to-live."""
        return self._shared_read(self._admission, uid, namespace, read)

    def secret_exists(self, uid: str, namespace: str, name: str, read: Callable[[], V]) -> V:
        """Whether Secret namespace/name exists: `read()` once per time-to-live."""
        return self._shared_read(self._secrets, uid, (namespace, name), read)

    def stop_reading_secret(self, uid: str) -> None:
        """The object needs no Secret read any more (its run started)."""
        with self._guard:
            self._secrets.detach(uid)

    def _shared_read(self, reads: _SharedReads, uid: str, key: Hashable, read: Callable[[], V]) -> V:
        with self._guard:
            if uid in self._locks:  # a forgotten object reads without leaving a trace
                reads.attach(uid, key)
            value = reads.fresh(key, self._clock())
        if value is not _MISSING:
            return cast(V, value)  # stored by an earlier read() of this key, which returns a V
        value = read()  # outside the guard: other objects' reconciles need not wait for the API
        with self._guard:
            reads.store(key, value, self._clock())
        return value

    def forget(self, uid: str) -> None:
        """Drops everything remembered about a deleted DatasetJob. Waits for a reconcile of it
        in flight first, so that one cannot put back what was just dropped."""
        with self._guard:
            lock = self._locks.get(uid)
        with lock or contextlib.nullcontext(), self._guard:
            self._locks.pop(uid, None)
            self._phase_since.pop(uid, None)
            self._config_maps.detach(uid)
            self._admission.detach(uid)
            self._secrets.detach(uid)

    def __len__(self) -> int:
        """Entries held, all tables together: what grows with the DatasetJobs remembered."""
        with self._guard:
            tables = (self._config_maps, self._admission, self._secrets)
            return len(self._locks) + len(self._phase_since) + sum(len(t) for t in tables)
