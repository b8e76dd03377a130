"""The cache behind `ctx.cached(key, fn, ttl)`: get-or-compute with single-flight.

Backends: `EmbeddedCache` (one SQLite file on disk, shared by all local processes),
`RedisCache` (redis_backend: shared by every pod) and `NullCache` (no cache); `make_cache`
(factory) picks one for a worker. Values are JSON, never pickle (values): a shared cache must
not be a way to run code in every worker.
"""

from __future__ import annotations

from datasetjob.cache.base import Cache
from datasetjob.cache.embedded import EmbeddedCache
from datasetjob.cache.null import NullCache
from datasetjob.cache.values import decode_value, encode_value
from datasetjob.errors import CacheValueError

__all__ = ["Cache", "CacheValueError", "EmbeddedCache", "NullCache", "encode_value", "decode_value"]
