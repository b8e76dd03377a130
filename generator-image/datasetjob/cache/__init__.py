"""The cache behind `ctx.cached(key, fn, ttl)`: get-or-compute with single-flight.

Backends: `EmbeddedCache` (one SQLite file on disk, shared by all local processes),
`RedisCache` (redis_backend: shared by every pod) and `NullCache` (no cache); `make_cache`
(factory) picks one for a worker. Values are JSON, never pickle (values): a shared cache must
not be a way to run code in every worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .embedded import EmbeddedCache
from .null import NullCache
from .values import CacheValueError, decode_value, encode_value

__all__ = ["Cache", "CacheValueError", "EmbeddedCache", "NullCache", "encode_value", "decode_value"]


class Cache(Protocol):
    def get(self, key: str) -> tuple[bool, Any]: ...
    def set(self, key: str, value: Any, ttl: int | None = None) -> None: ...
    def get_or_compute(self, key: str, fn: Callable[[], Any], ttl: int | None = None) -> tuple[Any, bool]:
        """(value, hit). On a miss exactly one caller across processes runs `fn`."""

    def close(self) -> None: ...
