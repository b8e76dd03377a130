"""The cache behind `ctx.cached(key, fn, ttl)`: get-or-compute with single-flight.

Backends: `EmbeddedCache` (one SQLite file on disk, shared by all local processes) and
`NullCache` (no cache). Values are JSON, never pickle: a shared cache must not be a way
to run code in every worker.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Protocol

from .embedded import EmbeddedCache
from .null import NullCache

__all__ = ["Cache", "CacheValueError", "EmbeddedCache", "NullCache", "encode_value", "decode_value"]


class CacheValueError(TypeError):
    """A value that cannot be stored as JSON."""


class Cache(Protocol):
    def get(self, key: str) -> tuple[bool, Any]: ...
    def set(self, key: str, value: Any, ttl: int | None = None) -> None: ...
    def get_or_compute(self, key: str, fn: Callable[[], Any], ttl: int | None = None) -> tuple[Any, bool]:
        """(value, hit). On a miss exactly one caller across processes runs `fn`."""
    def close(self) -> None: ...


def encode_value(key: str, value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise CacheValueError(f"cache key {key!r}: value is not JSON-serialisable ({exc})") from None


def decode_value(text: str) -> Any:
    return json.loads(text)
