"""A run's spend (requests, tokens, cost) counted across every worker, and spec.budget over it.

The ledger is one hash per run: in the cache's Redis when there is one (every pod of the run
adds to it atomically, HINCRBYFLOAT), else a small JSON file in the embedded cache directory,
rewritten under an exclusive flock (every process of a local run). A worker adds each finished
item's usage and reads the totals back in the same step; once a total reaches its limit the
worker starts no new item. What is in flight then still finishes and is kept, so a run spends
at most its budget plus what its items in flight spend: (workers x concurrency) items.

While Redis does not answer, a worker waits for it (redis_link.RedisLink.wait_for: with backoff,
for up to DSJ_REDIS_RETRY_SECONDS) and starts no new item meanwhile: counting apart would let
each process spend up to the whole budget. Past the window the worker stops as on SIGTERM
(checkpoint saved) and fails, to be retried. A Redis that comes back empty has lost the hash:
each worker then raises every total back to at least the last total it saw plus its own usage
since (never more than was spent), so the ledger misses at most the usage of the few items
that finished as Redis went, which no worker still running had counted.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
from abc import ABC, abstractmethod
from pathlib import Path

from datasetjob.spec.api import BudgetFields
from datasetjob.spec.budget import USAGE, Spend, no_spend, spend_text

log = logging.getLogger("datasetjob.worker")

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


# KEYS: the ledger hash   ARGV: ttl, then per usage: name, delta, floor
# -> {total per usage..., 1 if a total was below its floor (the hash was lost) else 0}
ADD_SPEND = """
local out, raised = {}, 0
for i = 2, #ARGV, 3 do
  local total = redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1])
  if tonumber(total) < tonumber(ARGV[i + 2]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    total, raised = ARGV[i + 2], 1
  end
  out[#out + 1] = total
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
out[#out + 1] = raised
return out
"""
LEDGER = "the run's spend ledger (spec.budget)"
# Redis adds in long double, this process in double: a floor a rounding above the true total
# must not read as a lost hash.
FLOOR_MARGIN = 1e-9


def spend_args(ttl: int, unsent: Spend, last: Spend) -> list[str | int]:
    """ADD_SPEND's arguments: each usage's delta, and its floor: the last total seen plus the
    delta, which the run has certainly reached (totals only grow), less a rounding margin. Pure."""
    args: list[str | int] = [ttl]
    for name in USAGE:
        args += [name, repr(unsent[name]), repr((last[name] + unsent[name]) * (1 - FLOOR_MARGIN))]
    return args


class RedisLedger(SpendLedger):
    """dsj:spend:{namespace}:{run} in the cache's Redis, shared by every pod of the run."""

    def __init__(self, url: str, namespace: str, run: str):
        from datasetjob.redis_link import RUN_KEYS_TTL_SECONDS, get_link

        self.link = get_link(url)
        self.key = f"dsj:spend:{namespace}:{run}"
        self.ttl = RUN_KEYS_TTL_SECONDS
        self._script = self.link.script(ADD_SPEND)
        self._lock = threading.Lock()
        self._unsent = no_spend()  # usage not in Redis yet (it did not answer)
        self._last = no_spend()

    def reset(self) -> None:
        self.link.run(lambda client: client.delete(self.key))

    def add(self, delta: Spend) -> Spend:
        """The run's totals with `delta` added; waits for a Redis that does not answer, and
        raises RedisUnavailable when it stays away (the delta is kept for the next add)."""
        with self._lock:
            for name in USAGE:
                self._unsent[name] += delta.get(name, 0.0)
            unsent = dict(self._unsent)
            args = spend_args(self.ttl, unsent, self._last)
        reply = self.link.wait_for(lambda client: self._script(keys=[self.key], args=args), LEDGER)
        totals = {name: float(value) for name, value in zip(USAGE, reply[: len(USAGE)], strict=True)}
        if int(reply[len(USAGE)]):
            log.warning(
                "%s was missing in Redis (a new, empty Redis?): restored to at least the totals this "
                "worker had seen: %s",
                LEDGER,
                spend_text(totals),
            )
        with self._lock:
            for name in USAGE:
                self._unsent[name] -= unsent[name]
            # totals only grow: an add answered late must not lower what a later one saw
            self._last = {name: max(self._last[name], totals[name]) for name in USAGE}
            return dict(totals)
