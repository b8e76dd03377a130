"""The Lua scripts of the Redis cache: lookup-or-lock, fill, and the single-flight lock's release and renewal."""

# KEYS: value, lock[, stats]   ARGV: token, lock_ms, stats_ttl, earlier hits to add
# -> {1, value} hit | {2} we hold the lock, compute | {0} another caller is computing
LOOKUP = """
local v = redis.call('GET', KEYS[1])
if #KEYS > 2 then
  local hits = tonumber(ARGV[4])
  if v then
    hits = hits + 1
  end
  if hits > 0 then
    redis.call('HINCRBY', KEYS[3], 'hits', hits)
    redis.call('EXPIRE', KEYS[3], ARGV[3])
  end
end
if v then
  return {1, v}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {2}
end
return {0}
"""

# KEYS: value, lock[, stats]   ARGV: json, ttl_seconds (0 = none), token, stats_ttl
FILL = """
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
if redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
if #KEYS > 2 then
  redis.call('HINCRBY', KEYS[3], 'misses', 1)
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return 1
"""

# KEYS: lock   ARGV: token
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: lock   ARGV: token, lock_ms
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
