"""Choosing a worker's limiter from `spec.rateLimit`, the Redis URL and where it runs."""

from __future__ import annotations

import logging
import os

from datasetjob.localdirs import embedded_cache_dir
from datasetjob.ratelimit.base import REQUESTS, TOKENS, Limit, TokenBucket
from datasetjob.ratelimit.local import InProcessTokenBucket, LocalTokenBucket
from datasetjob.ratelimit.redis_bucket import RedisTokenBucket
from datasetjob.redis_link import effective_redis_url
from datasetjob.spec.model import DatasetJobSpec, RateLimitSpec

log = logging.getLogger("datasetjob.ratelimit")


def spec_limits(rl: RateLimitSpec) -> tuple[Limit, ...]:
    """The buckets of spec.rateLimit, rates per second."""
    limits = []
    if rl.requests_per_second is not None:
        limits.append(Limit("requestsPerSecond", REQUESTS, rl.requests_per_second, rl.burst))
    if rl.requests_per_minute is not None:
        limits.append(Limit("requestsPerMinute", REQUESTS, rl.requests_per_minute / 60, rl.burst, per=60))
    if rl.tokens_per_minute is not None:
        limits.append(Limit("tokensPerMinute", TOKENS, rl.tokens_per_minute / 60, rl.token_burst, per=60))
    return tuple(limits)


def make_limiter(spec: DatasetJobSpec) -> TokenBucket:
    """The limiter of `spec.rateLimit` (which must be set): in Redis when a Redis is configured,
    else on local disk (shared by the machine's workers), or, in a pod without Redis, the pod's
    share in-process."""
    rl = spec.rate_limit
    assert rl is not None  # callers make a limiter only for a spec with a rate limit
    limits = spec_limits(rl)
    share = max(1, min(spec.parallelism, spec.shards))
    url = effective_redis_url(spec.cache.redis_url)
    if url:
        return RedisTokenBucket(url, rl.scope, parallelism=share, limits=limits)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        # a pod without Redis cannot share its limits with the other pods: take its share
        log.warning(
            "spec.rateLimit without a Redis (spec.cache.redisUrl is empty): this pod limits itself "
            "to 1/parallelism of each limit (%s)",
            ", ".join(f"{limit.name} {limit.rate * limit.per / share:.3g}" for limit in limits),
        )
        return InProcessTokenBucket(limits=[limit.share(share) for limit in limits])
    return LocalTokenBucket(embedded_cache_dir(), rl.scope, limits=limits)
