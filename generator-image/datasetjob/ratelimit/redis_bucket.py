"""The cluster-wide rate limiter: a token bucket in Redis, shared by every pod of a scope.

Key `dsj:ratelimit:{scope}` is a hash {tokens, at}. Every decision is one Lua script, so it is
atomic, and it reads the clock with Redis TIME inside the script: pods' clocks never matter.
DatasetJobs naming the same `rateLimit.scope` share one budget.

If Redis is unreachable (at start or mid-run) the bucket falls back to an in-process bucket
with this pod's share, `requestsPerSecond / parallelism` (burst likewise), rather than to no
limit; Redis is tried again every DSJ_REDIS_RECONNECT_SECONDS.
"""

from __future__ import annotations

from datasetjob.ratelimit.base import TokenBucket
from datasetjob.ratelimit.local import InProcessTokenBucket
from datasetjob.redis_link import get_link, ratelimit_key

# KEYS: bucket   ARGV: rate, burst, reserve (1/0)
# -> {wait, slot}: wait = seconds to wait ("0": a token was taken; with reserve the token of
#    the slot is taken in any case), slot = server time of the token (or of the next one)
# Numbers go back as strings: Redis turns Lua numbers into integers.
TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local reserve = ARGV[3] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate)
  at = now
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
  if reserve then
    tokens = tokens - 1
  end
end
if wait == 0 or reserve then
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%.17g', at))
  local full_in_ms = math.ceil((burst - tokens) / rate * 1000) + 1000
  redis.call('PEXPIRE', KEYS[1], full_in_ms)
end
return {string.format('%.17g', wait), string.format('%.17g', at + wait)}
"""


class RedisTokenBucket(TokenBucket):
    """`requests_per_second` sustained, `burst` at once, across every pod naming `scope`.

    acquire()      block until a token is ours; returns its slot (epoch seconds, Redis clock)
    try_acquire()  0 if a token was taken now, else the seconds until one will be available
    """

    def __init__(self, url: str, scope: str, requests_per_second: float, burst: int, parallelism: int = 1):
        if requests_per_second <= 0:
            raise ValueError("requests_per_second must be > 0")
        self.url = url
        self.scope = scope
        self.key = ratelimit_key(scope)
        self.rate = float(requests_per_second)
        self.burst = max(1, int(burst))
        self.parallelism = max(1, int(parallelism))
        self.link = get_link(url)
        self._script = self.link.script(TOKEN_BUCKET)
        self._args_try: list[str | int] = [repr(self.rate), self.burst, 0]
        self._args_reserve: list[str | int] = [repr(self.rate), self.burst, 1]
        self.fallback = InProcessTokenBucket(self.rate / self.parallelism, max(1, self.burst // self.parallelism))
        self.link.check()

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and the per-pod share is in force."""
        return self.link.down

    def step(self, reserve: bool) -> tuple[float, float]:
        """The script's decision, or the per-pod fallback's while Redis is unreachable."""
        args = self._args_reserve if reserve else self._args_try
        ok, reply = self.link.run(lambda c: self._script(keys=[self.key], args=args))
        if not ok:
            return self.fallback.step(reserve)
        assert reply is not None  # the script always answers [wait, slot]
        return float(reply[0]), float(reply[1])


__all__ = ["RedisTokenBucket", "TOKEN_BUCKET"]
