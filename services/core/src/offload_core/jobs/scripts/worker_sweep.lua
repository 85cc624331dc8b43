-- Find the workers that became lost (offload_core/fleet/registry.py): entries last seen before
-- `lost_before` that are not marked yet get `lost_at`, once, whichever status replica runs this;
-- their types are returned, one per newly lost worker (offload_workers_lost_total counts them).
-- Entries cross the line in the order they were last seen, so the newest first are looked at,
-- and the scan stops at the first one already marked: at most `limit` entries per call.
-- Ids not seen since `forget_before` leave the index (their entries have expired).
local workers_key = unpack(KEYS)
local lost_before, forget_before, now, worker_key_prefix, limit = unpack(ARGV)

redis.call('ZREMRANGEBYSCORE', workers_key, '-inf', '(' .. forget_before)
local lost = {}
local ids = redis.call('ZREVRANGEBYSCORE', workers_key, '(' .. lost_before, '-inf', 'LIMIT', 0, tonumber(limit))
for _, id in ipairs(ids) do
  local key = worker_key_prefix .. id
  local h = redis.call('HMGET', key, 'type', 'lost_at')
  if h[2] then break end
  if h[1] then
    redis.call('HSET', key, 'lost_at', now)
    lost[#lost + 1] = h[1]
  end
end
return lost
