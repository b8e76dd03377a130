"""The cache interface every backend implements: a backend that misses a method cannot be made."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any


class Cache(ABC):
    @abstractmethod
    def get(self, key: str) -> tuple[bool, Any]:
        """(found, value)."""

    @abstractmethod
    def set(self, key: str, value: Any, ttl: int | None = None) -> None: ...

    @abstractmethod
    def get_or_compute(self, key: str, fn: Callable[[], Any], ttl: int | None = None) -> tuple[Any, bool]:
        """(value, hit). On a miss exactly one caller across processes runs `fn`."""

    @abstractmethod
    def close(self) -> None:
        """Release what the cache holds (connections, single-flight locks)."""

    @abstractmethod
    def flush_stats(self) -> None:
        """Publish hit counts kept in-process to the run's shared counters (only Redis keeps any)."""
