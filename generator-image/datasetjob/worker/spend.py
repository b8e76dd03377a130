"""A run's spend (requests, tokens, cost) counted across every worker, and spec.budget over it.

The ledger is one hash per run: in the cache's Redis when there is one (every pod of the run
adds to it atomically, HINCRBYFLOAT), else a small JSON file in the embedded cache directory,
rewritten under an exclusive flock (every process of a local run). A worker adds each finished
item's usage and reads the totals back in the same step; once a total reaches its limit the
worker starts no new item. What is in flight then still finishes and is kept, so a run spends
at most its budget plus what its items in flight spend: (workers x concurrency) items.

While Redis is unreachable, usage is kept in the process and added when it is back: the limit
then holds per process only, and is caught up with afterwards.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
from abc import ABC, abstractmethod
from pathlib import Path

from datasetjob.spec.api import BudgetFields
from datasetjob.spec.budget import USAGE, Spend, no_spend

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def make_ledger(
    budget: BudgetFields | None,
    redis_url: str | None,
    namespace: str,
    run: str,
    directory: str | os.PathLike[str] | None = None,
) -> SpendLedger | None:
    """The run's ledger when it has a budget: in Redis when there is one, else on local disk in
    `directory` (default: the embedded cache's), shared by the machine's processes (in a pod
    without Redis, the pod's own)."""
    if budget is None:
        return None
    if redis_url:
        return RedisLedger(redis_url, namespace, run)
    from datasetjob.localdirs import embedded_cache_dir

    return FileLedger(directory or embedded_cache_dir(), run)


class SpendLedger(ABC):
    """The run's spend so far; `add` counts a delta and answers the new totals in one step."""

    @abstractmethod
    def add(self, delta: Spend) -> Spend: ...

    @abstractmethod
    def reset(self) -> None:
        """Nothing spent: a new run (not a resumed one) of the same run id."""

    def totals(self) -> Spend:
        return self.add(no_spend())


class FileLedger(SpendLedger):
    """<directory>/spend/<run>.json, shared by the processes of one machine."""

    def __init__(self, directory: str | os.PathLike[str], run: str):
        folder = Path(directory) / "spend"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{_UNSAFE.sub('_', run)}.json"

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)

    def add(self, delta: Spend) -> Spend:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, 4096)
            try:
                spent = {name: float(value) for name, value in json.loads(raw).items() if name in USAGE}
            except (ValueError, TypeError, AttributeError):
                spent = {}  # new (or torn by a crash mid-write)
            totals = {name: spent.get(name, 0.0) + delta.get(name, 0.0) for name in USAGE}
            if any(delta.values()):
                # in place, padded to the old length: the file is never empty, even if this process dies
                os.pwrite(fd, json.dumps(totals).encode().ljust(len(raw)), 0)
            return totals
        finally:
            os.close(fd)


class RedisLedger(SpendLedger):
    """dsj:spend:{namespace}:{run} in the cache's Redis, shared by every pod of the run."""

    def __init__(self, url: str, namespace: str, run: str):
        from datasetjob.redis_link import RUN_KEYS_TTL_SECONDS, get_link

        self.link = get_link(url)
        self.key = f"dsj:spend:{namespace}:{run}"
        self.ttl = RUN_KEYS_TTL_SECONDS
        self._lock = threading.Lock()
        self._unsent = no_spend()  # usage not in Redis yet (it was unreachable)
        self._last = no_spend()

    def reset(self) -> None:
        self.link.run(lambda client: client.delete(self.key))

    def add(self, delta: Spend) -> Spend:
        with self._lock:
            for name in USAGE:
                self._unsent[name] += delta.get(name, 0.0)
            unsent = dict(self._unsent)

        def op(client) -> list[object]:  # type: ignore[no-untyped-def]  # redis-py's client, imported lazily
            pipe = client.pipeline(transaction=True)
            for name in USAGE:
                pipe.hincrbyfloat(self.key, name, unsent[name])
            pipe.expire(self.key, self.ttl)
            return list(pipe.execute())

        ok, result = self.link.run(op)
        with self._lock:
            if ok and result is not None:
                for name in USAGE:
                    self._unsent[name] -= unsent[name]
                self._last = {name: float(value) for name, value in zip(USAGE, result[: len(USAGE)], strict=True)}  # type: ignore[arg-type]
                return dict(self._last)
            # Redis is down: what this process knows (the last totals and what it has not sent)
            return {name: self._last[name] + self._unsent[name] for name in USAGE}
