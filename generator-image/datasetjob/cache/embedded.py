"""The local cache: a SQLite file shared by every worker process on the machine.

Single-flight uses one flock()ed lock file per key, so N processes (and threads) missing the
same key make one upstream call; the others block on the lock and then read the value.

It is a cache: a file that is not a database (or is damaged) is moved aside to
cache.sqlite.corrupt-<time> and a fresh one started, said once in the log, never a failed run.
Damage found mid-run turns the cache off in that process and marks the file, so the next
process to start sets it aside.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasetjob.cache.base import Cache
from datasetjob.cache.values import decode_value, encode_value
from datasetjob.localdirs import embedded_cache_dir

# Past this, a lock holder is presumed stuck and the waiter computes for itself.
SINGLE_FLIGHT_TIMEOUT_SECONDS = 120.0

log = logging.getLogger("datasetjob.cache")

_SCHEMA = "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL)"


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Not a database, or a damaged one (a busy or locked database is an OperationalError)."""
    return not isinstance(exc, sqlite3.OperationalError)


class EmbeddedCache(Cache):
    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        namespace: str = "default",
        default_ttl: int | None = None,
    ):
        self.dir = Path(directory) if directory else embedded_cache_dir()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "locks").mkdir(exist_ok=True)
        self.db_path = self.dir / "cache.sqlite"
        self.bad_marker = self.dir / "cache.sqlite-damaged"
        self.namespace = namespace
        self.default_ttl = default_ttl
        self._local = threading.local()
        self._off = False  # damage found mid-run: this process goes on without the cache
        self._why = ""
        if self.bad_marker.exists() or not self._usable():
            self._set_aside()

    def _usable(self) -> bool:
        try:
            conn = self._connect()
            try:
                conn.execute(_SCHEMA)
            finally:
                conn.close()
            return True
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise
            self._why = " ".join(str(exc).split())
            return False

    def _set_aside(self) -> None:
        """Under a lock, so of the processes that find the file damaged one moves it and the
        others find the fresh one."""
        self._why = "marked damaged by an earlier process"
        fd = os.open(self.dir / "locks" / "cache.sqlite.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not self.bad_marker.exists() and self._usable():
                return  # set aside by another process while this one waited
            aside = self.dir / f"cache.sqlite.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
            if self.db_path.exists():
                os.replace(self.db_path, aside)
            for extra in ("-wal", "-shm", "-journal"):
                (self.dir / f"cache.sqlite{extra}").unlink(missing_ok=True)
            self.bad_marker.unlink(missing_ok=True)
            conn = self._connect()
            try:
                conn.execute(_SCHEMA)
            finally:
                conn.close()
            log.warning(
                "embedded cache %s is corrupt (%s): moved aside to %s; started an empty one",
                self.db_path,
                self._why,
                aside,
            )
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _damage(self, exc: sqlite3.DatabaseError) -> None:
        """Damage found mid-run: no cache in this process from now on, and the file marked."""
        if not _damaged(exc):
            raise exc
        if not self._off:
            self._off = True
            self.bad_marker.touch()
            log.warning(
                "embedded cache %s is corrupt (%s): going on without it; it is set aside when the next run starts",
                self.db_path,
                " ".join(str(exc).split()),
            )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @property
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _full(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    def get(self, key: str) -> tuple[bool, Any]:
        if self._off:
            return False, None
        try:
            row = self._conn.execute("SELECT value, expires FROM entries WHERE key = ?", (self._full(key),)).fetchone()
        except sqlite3.DatabaseError as exc:
            self._damage(exc)
            return False, None
        if row is None or (row[1] is not None and row[1] < time.time()):
            return False, None
        return True, decode_value(row[0])

    def set(self, key: str, value: Any, ttl: int | None = None) -> None:
        text = encode_value(key, value)
        if self._off:
            return
        ttl = self.default_ttl if ttl is None else ttl
        expires = time.time() + ttl if ttl else None
        try:
            self._conn.execute(
                "INSERT OR REPLACE INTO entries (key, value, expires) VALUES (?, ?, ?)",
                (self._full(key), text, expires),
            )
        except sqlite3.DatabaseError as exc:
            self._damage(exc)

    def _lock_path(self, key: str) -> Path:
        digest = hashlib.sha1(self._full(key).encode()).hexdigest()
        folder = self.dir / "locks" / digest[:2]
        folder.mkdir(exist_ok=True)
        return folder / digest

    def get_or_compute(self, key: str, fn: Callable[[], Any], ttl: int | None = None) -> tuple[Any, bool]:
        found, value = self.get(key)
        if found:
            return value, True
        fd = os.open(self._lock_path(key), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            locked = _lock(fd, SINGLE_FLIGHT_TIMEOUT_SECONDS)
            found, value = self.get(key)  # the holder we waited for may have filled it
            if found:
                return value, True
            value = fn()
            self.set(key, value, ttl)
            return value, False
        finally:
            if "locked" in locals() and locked:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def flush_stats(self) -> None:
        pass  # hits and misses are counted by the runner from shard summaries, not kept here

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _lock(fd: int, timeout: float) -> bool:
    """flock with a timeout; polls with a short, growing sleep (flock itself has no timeout)."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.002)
