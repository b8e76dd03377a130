"""Choosing the cache backend for a worker from the spec and the environment."""

from __future__ import annotations

from datasetjob.cache.base import Cache
from datasetjob.cache.embedded import EmbeddedCache
from datasetjob.cache.null import NullCache
from datasetjob.errors import GeneratorConfigError
from datasetjob.redis_link import effective_redis_url
from datasetjob.spec.model import DatasetJobSpec

__all__ = ["make_cache"]


def make_cache(spec: DatasetJobSpec, run_id: str | None = None) -> Cache:
    """None → the embedded on-disk cache; "" → no cache; redis://... → the shared Redis cache."""
    url = effective_redis_url(spec.cache.redis_url)
    if url == "":
        return NullCache()
    if url is None:
        return EmbeddedCache(namespace=spec.cache.namespace, default_ttl=spec.cache.ttl_seconds)
    from datasetjob.cache.redis_backend import RedisCache  # imports redis-py: only for a Redis cache

    try:
        return RedisCache(url, namespace=spec.cache.namespace, default_ttl=spec.cache.ttl_seconds, run_id=run_id)
    except ValueError as exc:  # not a redis://, rediss:// or unix:// URL: retrying cannot help
        raise GeneratorConfigError(f"spec.cache.redisUrl: {exc}") from None
