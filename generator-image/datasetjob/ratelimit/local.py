"""The buckets that live on one machine: in-process (threads) and file-locked (the machine's processes)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import time
from pathlib import Path

from datasetjob.ratelimit.base import TokenBucket, bucket_step


class InProcessTokenBucket(TokenBucket):
    """The same bucket for one process's threads."""

    def __init__(self, requests_per_second: float, burst: float):
        self.rate = float(requests_per_second)
        self.burst = max(1.0, float(burst))
        self._tokens: float | None = None
        self._at: float | None = None
        self._lock = threading.Lock()

    def step(self, reserve: bool) -> tuple[float, float]:
        with self._lock:
            self._tokens, self._at, wait = bucket_step(
                self._tokens, self._at, time.time(), self.rate, self.burst, reserve
            )
            return wait, self._at + wait


_SCOPE_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class LocalTokenBucket(TokenBucket):
    """`requests_per_second` sustained, `burst` at once, across processes on one machine.

    The state {"tokens", "at"} lives in <directory>/ratelimit/<scope>.json, read and rewritten
    under an exclusive flock(); `at` is wall-clock time, the one clock all processes share.
    """

    def __init__(self, directory: str | os.PathLike[str], scope: str, requests_per_second: float, burst: int):
        if requests_per_second <= 0:
            raise ValueError("requests_per_second must be > 0")
        folder = Path(directory) / "ratelimit"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{_SCOPE_UNSAFE.sub('_', scope)}.json"
        self.rate = float(requests_per_second)
        self.burst = max(1, int(burst))

    def step(self, reserve: bool) -> tuple[float, float]:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, 4096)
            tokens: float | None
            at: float | None
            try:
                state = json.loads(raw) if raw.strip() else {}
                tokens, at = float(state["tokens"]), float(state["at"])
            except (ValueError, KeyError, TypeError):
                tokens = at = None  # new, or torn by a crash mid-write: start with a full bucket
            tokens, at, wait = bucket_step(tokens, at, time.time(), self.rate, self.burst, reserve)
            body = json.dumps({"tokens": tokens, "at": at}).encode()
            # overwrite in place, padded with blanks to the old length (JSON ignores them):
            # the file is never empty or truncated, even if this process dies mid-write
            os.pwrite(fd, body.ljust(len(raw)), 0)
            return wait, at + wait
        finally:
            os.close(fd)  # closing the last descriptor releases the flock
