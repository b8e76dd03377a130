"""Choosing a worker's token bucket from `spec.rateLimit`, the Redis URL and where it runs."""

from __future__ import annotations

import logging
import os

from datasetjob.localdirs import embedded_cache_dir
from datasetjob.ratelimit.base import TokenBucket
from datasetjob.ratelimit.local import InProcessTokenBucket, LocalTokenBucket
from datasetjob.ratelimit.redis_bucket import RedisTokenBucket
from datasetjob.redis_link import effective_redis_url
from datasetjob.spec.model import DatasetJobSpec

log = logging.getLogger("datasetjob.ratelimit")


def make_limiter(spec: DatasetJobSpec) -> TokenBucket:
    """The bucket of `spec.rateLimit` (which must be set): in Redis when a Redis is configured, else
    on local disk (shared by the machine's workers), or, in a pod without Redis, the pod's share
    in-process."""
    rl = spec.rate_limit
    assert rl is not None  # callers make a limiter only for a spec with a rate limit
    url = effective_redis_url(spec.cache.redis_url)
    if url:
        return RedisTokenBucket(
            url, rl.scope, rl.requests_per_second, rl.burst, parallelism=max(1, min(spec.parallelism, spec.shards))
        )
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        # a pod without Redis cannot share a bucket with the other pods: take its share
        share = max(1, min(spec.parallelism, spec.shards))
        log.warning(
            "spec.rateLimit without a Redis (spec.cache.redisUrl is empty): this pod limits itself "
            "to requestsPerSecond / parallelism = %.3g requests/s",
            rl.requests_per_second / share,
        )
        return InProcessTokenBucket(rl.requests_per_second / share, max(1, rl.burst // share))
    return LocalTokenBucket(embedded_cache_dir(), rl.scope, rl.requests_per_second, rl.burst)
