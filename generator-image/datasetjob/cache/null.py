"""No cache at all: every lookup is a miss and computes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datasetjob.cache.base import Cache


class NullCache(Cache):
    def get(self, key: str) -> tuple[bool, Any]:
        return False, None

    def set(self, key: str, value: Any, ttl: int | None = None) -> None:
        pass

    def get_or_compute(self, key: str, fn: Callable[[], Any], ttl: int | None = None) -> tuple[Any, bool]:
        return fn(), False

    def close(self) -> None:
        pass

    def flush_stats(self) -> None:
        pass
