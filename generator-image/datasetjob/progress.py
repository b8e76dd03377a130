"""Live per-shard progress: the worker publishes snapshots, the local runner (or the operator)
reads them. Local mode uses one small JSON file per shard, rewritten atomically; with a Redis
cache the worker also stores each snapshot in the run's hash dsj:progress:{namespace}:{runId}
(RedisProgress, made by redis_progress), which read_redis_progress reads back."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datasetjob.redis_link import RUN_KEYS_TTL_SECONDS, RedisLink, get_link, progress_key

if TYPE_CHECKING:  # loaded by the link (redis_link): a worker without Redis never imports it
    import redis


class ProgressSink(ABC):
    """Where a worker publishes its shard's live snapshot."""

    @abstractmethod
    def publish(self, snapshot: dict[str, Any]) -> None: ...


class NullProgress(ProgressSink):
    def publish(self, snapshot: dict[str, Any]) -> None:
        pass


class FileProgress(ProgressSink):
    def __init__(self, directory: str | os.PathLike[str], index: int):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"{index:05d}.json"
        self._warned = False

    def publish(self, snapshot: dict[str, Any]) -> None:
        """Best effort: progress that cannot be written (a full disk) is skipped, not fatal. The
        temp file is never opened through a symbolic link (O_NOFOLLOW), and the rename replaces
        a link at the final name instead of following it."""
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        data = json.dumps(dict(snapshot, updatedAt=time.time())).encode()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if not self._warned:
                self._warned = True
                logging.getLogger("datasetjob.progress").warning("cannot write progress %s: %s", tmp, exc.strerror)


def read_file_progress(directory: str | os.PathLike[str]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    folder = Path(directory)
    if not folder.is_dir():
        return out
    for path in folder.glob("*.json"):
        try:
            out[int(path.stem)] = json.loads(path.read_text())
        except (ValueError, OSError):
            continue  # replaced while we read it; the next poll sees it
    return out


class RedisProgress(ProgressSink):
    """Stores a shard's latest snapshot in the run's progress hash (field = shard index) and
    passes it on to `fallback` (the local file progress), which always gets it."""

    def __init__(
        self,
        link: RedisLink,
        key: str,
        index: int,
        fallback: ProgressSink | None = None,
        on_publish: Callable[[], None] | None = None,
    ):
        self.link = link
        self.key = key
        self.index = int(index)
        self.fallback = fallback
        self.on_publish = on_publish

    def publish(self, snapshot: dict[str, Any]) -> None:
        if self.fallback is not None:
            self.fallback.publish(snapshot)
        text = json.dumps(dict(snapshot, updatedAt=time.time()), separators=(",", ":"))

        def op(c: redis.Redis) -> None:
            pipe = c.pipeline(transaction=False)
            pipe.hset(self.key, str(self.index), text)
            pipe.expire(self.key, RUN_KEYS_TTL_SECONDS)
            pipe.execute()

        self.link.run(op)
        if self.on_publish is not None:
            self.on_publish()


def redis_progress(
    url: str,
    namespace: str,
    run_id: str,
    index: int,
    fallback: ProgressSink | None = None,
    on_publish: Callable[[], None] | None = None,
) -> RedisProgress:
    """Where a worker with a Redis cache publishes its live progress: the run's hash in the cache
    namespace (for the operator) and `fallback`; `on_publish` runs after each publish (the worker
    flushes its cache's hit counts there, so progress and cache stats move together)."""
    return RedisProgress(get_link(url), progress_key(namespace, run_id), index, fallback, on_publish)


def _hgetall(url: str, key: str) -> dict[bytes | str, bytes | str]:
    """HGETALL over the process's shared client; {} (logged at debug level) if Redis fails."""
    link = get_link(url)  # imports redis
    import redis

    try:
        return link.client.hgetall(key)
    except (redis.RedisError, OSError) as exc:
        logging.getLogger("datasetjob.progress").debug("cannot read %s: %s", key, exc)
        return {}


def read_redis_progress(url: str, namespace: str, run_id: str) -> dict[int, dict[str, Any]]:
    """shard index → latest snapshot, from the run's hash dsj:progress:{namespace}:{run_id}
    (what workers publish through RedisProgress). {} when Redis is unreachable.

    Each snapshot is the shard's termination-message shape plus `index` and `updatedAt`:
    {"runId", "shard", "state", "items": {"total", "done", "failed", "skipped"}, "rows",
     "cache": {"hits", "misses"}, "upstreamCalls", ...}.
    """
    raw = _hgetall(url, progress_key(namespace, run_id))
    out: dict[int, dict[str, Any]] = {}
    for field, value in (raw or {}).items():
        try:
            out[int(field)] = json.loads(value)
        except (ValueError, TypeError):
            continue
    return out


def sum_shard_progress(snapshots: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Totals over shard snapshots: {"items": {"done", "failed", "skipped"}, "rows", "cache": {...}}."""
    items = {"done": 0, "failed": 0, "skipped": 0}
    cache = {"hits": 0, "misses": 0}
    rows = 0
    for snap in snapshots.values():
        for k in items:
            items[k] += int(snap.get("items", {}).get(k, 0))
        for k in cache:
            cache[k] += int(snap.get("cache", {}).get(k, 0))
        rows += int(snap.get("rows", 0))
    return {"items": items, "rows": rows, "cache": cache}
