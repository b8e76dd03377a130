"""Choosing the cache backend for a worker from the spec and the environment."""

from __future__ import annotations

import logging
import os

from .embedded import EmbeddedCache
from .null import NullCache

log = logging.getLogger("datasetjob.cache")


def effective_redis_url(spec_redis_url: str | None) -> str | None:
    """DSJ_REDIS_URL (set by `dsj run --redis-url` or the operator) overrides an absent spec value."""
    override = os.environ.get("DSJ_REDIS_URL")
    if spec_redis_url is None and override is not None:
        return override
    return spec_redis_url


def make_cache(spec, run_id: str | None = None):
    """None → the embedded on-disk cache; "" → no cache; redis://... → the shared Redis cache."""
    url = effective_redis_url(spec.cache.redis_url)
    if url == "":
        return NullCache()
    if url is None:
        return EmbeddedCache(os.environ.get("DSJ_EMBEDDED_CACHE_DIR") or None, namespace=spec.cache.namespace,
                             default_ttl=spec.cache.ttl_seconds)
    from .redis_backend import RedisCache

    try:
        return RedisCache(url, namespace=spec.cache.namespace, default_ttl=spec.cache.ttl_seconds, run_id=run_id)
    except ValueError as exc:  # not a redis://, rediss:// or unix:// URL: retrying cannot help
        from ..errors import GeneratorConfigError

        raise GeneratorConfigError(f"spec.cache.redisUrl: {exc}") from None
