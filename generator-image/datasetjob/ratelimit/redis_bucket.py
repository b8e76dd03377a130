"""The cluster-wide limiter: a scope's buckets in Redis, shared by every pod naming the scope.

Key `dsj:ratelimit:{scope}` is a hash: `at`, one `t:<limit>` level per limit, and the scope's
back-pressure (`f` factor, `fat` when it was last recovered, `pause` until when every pod
waits, `thr` throttles seen, `dec` the last decrease). Every decision is one Lua script, so a
take across all of a scope's buckets is atomic, and it reads the clock with Redis TIME inside
the script: pods' clocks never matter. DatasetJobs naming the same `rateLimit.scope` share it.

If Redis is unreachable (at start or mid-run) the limiter falls back to an in-process one
with this pod's share of every limit (rate and burst / parallelism) rather than to no limit;
Redis is tried again every DSJ_REDIS_RECONNECT_SECONDS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from datasetjob.ratelimit.base import (
    DECREASE,
    DEFAULT_PAUSE,
    MAX_PAUSE,
    MIN_FACTOR,
    RECOVERY_PER_SECOND,
    Limit,
    Reply,
    TokenBucket,
    limits_of,
)
from datasetjob.ratelimit.local import InProcessTokenBucket
from datasetjob.redis_link import get_link, ratelimit_key

# base.scope_step, line by line.
# KEYS: scope   ARGV: op, reserve (1/0), retryAfter ('' none), sentAt ('' none), decrease,
#   recovery/s, min factor, default pause, max pause, n, then n times: name, rate, burst, weight
# -> {wait, slot, factor, pausedUntil, throttles}
# Numbers go back as strings: Redis turns Lua numbers into integers.
SCOPE_STEP = """
local op = ARGV[1]
local reserve = ARGV[2] == '1'
local decrease, recovery, min_factor = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local default_pause, max_pause = tonumber(ARGV[8]), tonumber(ARGV[9])
local n = tonumber(ARGV[10])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local names, rates, bursts, weights, fields = {}, {}, {}, {}, {}
for i = 1, n do
  local base = 10 + (i - 1) * 4
  names[i] = 't:' .. ARGV[base + 1]
  rates[i] = tonumber(ARGV[base + 2])
  bursts[i] = tonumber(ARGV[base + 3])
  weights[i] = tonumber(ARGV[base + 4])
  fields[i] = names[i]
end
local head = redis.call('HMGET', KEYS[1], 'at', 'f', 'fat', 'pause', 'thr', 'dec')
local levels = n > 0 and redis.call('HMGET', KEYS[1], unpack(fields)) or {}
local at = tonumber(head[1]) or now
local factor = tonumber(head[2]) or 1
local factor_at = tonumber(head[3]) or now
local paused_until = tonumber(head[4]) or 0
local throttles = tonumber(head[5]) or 0
local decreased_at = tonumber(head[6]) or 0
local tokens = {}
for i = 1, n do
  tokens[i] = tonumber(levels[i]) or bursts[i]
end
if now > at then
  for i = 1, n do
    tokens[i] = math.min(bursts[i], tokens[i] + (now - at) * rates[i] * factor)
  end
  at = now
end
if now > factor_at then
  factor = math.min(1, factor + (now - factor_at) * recovery)
  factor_at = now
end
local wait = 0
if op == 'take' then
  local need = 0
  for i = 1, n do
    local shortfall = weights[i] - tokens[i]
    if shortfall > 0 then
      need = math.max(need, shortfall / (rates[i] * factor))
    end
  end
  local slot = math.max(now, at) + need
  wait = slot - now
  if wait <= 0 or reserve then
    for i = 1, n do
      tokens[i] = tokens[i] - weights[i]
    end
  end
  wait = math.max(0, wait)
elseif op == 'adjust' then
  for i = 1, n do
    tokens[i] = math.min(bursts[i], tokens[i] - weights[i])
  end
elseif op == 'throttle' then
  throttles = throttles + 1
  local pause = default_pause
  if ARGV[3] ~= '' then
    pause = math.min(max_pause, math.max(0, tonumber(ARGV[3])))
  end
  paused_until = math.max(paused_until, now + pause)
  if ARGV[4] == '' or tonumber(ARGV[4]) >= decreased_at then
    factor = math.max(min_factor, factor * decrease)
    decreased_at = now
  end
  for i = 1, n do
    tokens[i] = math.min(0, tokens[i])
  end
  at = math.max(at, paused_until)
  factor_at = math.max(factor_at, paused_until)
end
if op ~= 'peek' then
  local out = {'at', string.format('%.17g', at), 'f', string.format('%.17g', factor),
    'fat', string.format('%.17g', factor_at), 'pause', string.format('%.17g', paused_until),
    'thr', tostring(throttles), 'dec', string.format('%.17g', decreased_at)}
  local idle = 0
  for i = 1, n do
    out[#out + 1] = names[i]
    out[#out + 1] = string.format('%.17g', tokens[i])
    idle = math.max(idle, (bursts[i] - tokens[i]) / (rates[i] * factor))
  end
  redis.call('HSET', KEYS[1], unpack(out))
  -- kept until every bucket is full and the factor recovered, plus a minute for the counts
  idle = idle + (1 - factor) / recovery + math.max(0, at - now) + 60
  redis.call('PEXPIRE', KEYS[1], math.ceil(idle * 1000))
end
return {string.format('%.17g', wait), string.format('%.17g', now + wait), string.format('%.17g', factor),
  string.format('%.17g', paused_until), tostring(throttles)}
"""

_CONSTANTS = [repr(DECREASE), repr(RECOVERY_PER_SECOND), repr(MIN_FACTOR), repr(DEFAULT_PAUSE), repr(MAX_PAUSE)]


class RedisTokenBucket(TokenBucket):
    """A scope's limits across every pod naming `scope` (see TokenBucket for the calls)."""

    def __init__(
        self,
        url: str,
        scope: str,
        requests_per_second: float | None = None,
        burst: float = 1,
        parallelism: int = 1,
        *,
        limits: Sequence[Limit] | None = None,
    ):
        self.limits = limits_of(requests_per_second, burst, limits)
        self.url = url
        self.scope = scope
        self.key = ratelimit_key(scope)
        self.parallelism = max(1, int(parallelism))
        self.link = get_link(url)
        self._script = self.link.script(SCOPE_STEP)
        self.fallback = InProcessTokenBucket(limits=[limit.share(self.parallelism) for limit in self.limits])
        self.link.check()

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and the per-pod share is in force."""
        return self.link.down

    def _decide(
        self,
        op: str,
        weights: Mapping[str, float],
        reserve: bool = True,
        retry_after: float | None = None,
        sent_at: float | None = None,
    ) -> Reply:
        """The script's decision, or the per-pod fallback's while Redis is unreachable."""
        args: list[str | int] = [
            op,
            int(reserve),
            "" if retry_after is None else repr(float(retry_after)),
            "" if sent_at is None else repr(float(sent_at)),
            *_CONSTANTS,
            len(self.limits),
        ]
        for limit in self.limits:
            args += [limit.name, repr(limit.rate), repr(float(limit.burst)), repr(float(weights.get(limit.unit, 0.0)))]
        ok, reply = self.link.run(lambda c: self._script(keys=[self.key], args=args))
        if not ok:
            return self.fallback._decide(op, weights, reserve, retry_after, sent_at)
        assert reply is not None  # the script always answers
        return Reply(float(reply[0]), float(reply[1]), float(reply[2]), float(reply[3]), int(reply[4]))


__all__ = ["RedisTokenBucket", "SCOPE_STEP"]
