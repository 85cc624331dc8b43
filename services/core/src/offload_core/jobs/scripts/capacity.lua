-- Capacity: a counting semaphore across every worker process, whose slots are leases. The set
-- holds each holder (a job id) with the time its slot lapses; a holder that stops renewing (its
-- worker is gone) loses its slot when that time passes, so a dead pod's slots come back by
-- themselves. Members: at most `capacity` live ones, plus lapsed ones until the next acquire.
--   acquire  take a slot if fewer than `capacity` are live (or renew the holder's own): 1 | 0
--   renew    push the holder's slot lapse out again (only if it still has one): 1 | 0
--   release  give the slot back: 1 | 0
local slots_key = unpack(KEYS)
local mode, holder, now, lease_seconds, capacity = unpack(ARGV)

if mode == 'release' then return redis.call('ZREM', slots_key, holder) end
local lapses = tonumber(now) + tonumber(lease_seconds)
if mode == 'renew' then
  if redis.call('ZSCORE', slots_key, holder) then
    redis.call('ZADD', slots_key, lapses, holder)
    return 1
  end
  return 0
end
redis.call('ZREMRANGEBYSCORE', slots_key, '-inf', now)
if redis.call('ZSCORE', slots_key, holder) or redis.call('ZCARD', slots_key) < tonumber(capacity) then
  redis.call('ZADD', slots_key, lapses, holder)
  return 1
end
return 0
