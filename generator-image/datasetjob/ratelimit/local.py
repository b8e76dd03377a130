"""The limiters that live on one machine: in-process (threads) and file-locked (the machine's processes)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datasetjob.ratelimit.base import Limit, Reply, TokenBucket, limits_of, scope_step


class InProcessTokenBucket(TokenBucket):
    """A scope's limits for one process's threads."""

    def __init__(
        self, requests_per_second: float | None = None, burst: float = 1, *, limits: Sequence[Limit] | None = None
    ):
        self.limits = limits_of(requests_per_second, burst, limits)
        self._state: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _decide(
        self,
        op: str,
        weights: Mapping[str, float],
        reserve: bool = True,
        retry_after: float | None = None,
        sent_at: float | None = None,
    ) -> Reply:
        with self._lock:
            return scope_step(self._state, time.time(), self.limits, op, weights, reserve, retry_after, sent_at)


_SCOPE_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class LocalTokenBucket(TokenBucket):
    """A scope's limits across the processes of one machine.

    The state (see scope_step) lives in <directory>/ratelimit/<scope>.json, read and rewritten
    under an exclusive flock(); times are wall-clock time, the one clock all processes share.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        scope: str,
        requests_per_second: float | None = None,
        burst: float = 1,
        *,
        limits: Sequence[Limit] | None = None,
    ):
        self.limits = limits_of(requests_per_second, burst, limits)
        folder = Path(directory) / "ratelimit"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{_SCOPE_UNSAFE.sub('_', scope)}.json"

    def _decide(
        self,
        op: str,
        weights: Mapping[str, float],
        reserve: bool = True,
        retry_after: float | None = None,
        sent_at: float | None = None,
    ) -> Reply:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, 65536)
            try:
                state = json.loads(raw) if raw.strip() else {}
                if not isinstance(state, dict) or not isinstance(state.get("tokens", {}), dict):
                    state = {}  # another layout (an older version's): start afresh
            except ValueError:
                state = {}  # new, or torn by a crash mid-write: start with full buckets
            reply = scope_step(state, time.time(), self.limits, op, weights, reserve, retry_after, sent_at)
            if op != "peek":
                body = json.dumps(state).encode()
                # overwrite in place, padded with blanks to the old length (JSON ignores them):
                # the file is never empty or truncated, even if this process dies mid-write
                os.pwrite(fd, body.ljust(len(raw)), 0)
            return reply
        finally:
            os.close(fd)  # closing the last descriptor releases the flock
