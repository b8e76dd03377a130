"""Live per-shard progress: the worker publishes snapshots, the local runner (or the operator)
reads them. Local mode uses one small JSON file per shard, rewritten atomically; with a Redis
cache the worker also stores each snapshot in the run's hash dsj:progress:{namespace}:{runId}
(RedisCache.progress_sink), which read_redis_progress reads back."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path


class NullProgress:
    def publish(self, snapshot: dict) -> None:
        pass


class FileProgress:
    def __init__(self, directory: str | os.PathLike, index: int):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"{index:05d}.json"

    def publish(self, snapshot: dict) -> None:
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(dict(snapshot, updatedAt=time.time())))
        os.replace(tmp, self.path)


def read_file_progress(directory: str | os.PathLike) -> dict[int, dict]:
    out = {}
    folder = Path(directory)
    if not folder.is_dir():
        return out
    for path in folder.glob("*.json"):
        try:
            out[int(path.stem)] = json.loads(path.read_text())
        except (ValueError, OSError):
            continue  # replaced while we read it; the next poll sees it
    return out


def _hgetall(url: str, key: str) -> dict:
    """HGETALL over the process's shared client; {} (logged at debug level) if Redis fails."""
    import redis

    from .cache.redis_backend import get_link

    try:
        return get_link(url).client.hgetall(key)
    except (redis.RedisError, OSError) as exc:
        logging.getLogger("datasetjob.progress").debug("cannot read %s: %s", key, exc)
        return {}


def read_redis_progress(url: str, namespace: str, run_id: str) -> dict[int, dict]:
    """shard index → latest snapshot, from the run's hash dsj:progress:{namespace}:{run_id}
    (what workers publish through RedisCache.progress_sink). {} when Redis is unreachable.

    Each snapshot is the shard's termination-message shape plus `index` and `updatedAt`:
    {"runId", "shard", "state", "items": {"total", "done", "failed", "skipped"}, "rows",
     "cache": {"hits", "misses"}, "upstreamCalls", ...}.
    """
    from .cache.redis_backend import progress_key

    raw = _hgetall(url, progress_key(namespace, run_id))
    out: dict[int, dict] = {}
    for field, value in (raw or {}).items():
        try:
            out[int(field)] = json.loads(value)
        except (ValueError, TypeError):
            continue
    return out


def read_redis_cache_stats(url: str, namespace: str, run_id: str) -> dict[str, int]:
    """{"hits", "misses"} of the run's shared-cache lookups so far (dsj:stats:{namespace}:{run_id})."""
    from .cache.redis_backend import stats_key

    raw = _hgetall(url, stats_key(namespace, run_id))
    raw = {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in (raw or {}).items()}
    return {"hits": raw.get("hits", 0), "misses": raw.get("misses", 0)}


def sum_shard_progress(snapshots: dict[int, dict]) -> dict:
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
