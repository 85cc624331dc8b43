-- A worker process's heartbeat (offload_core/fleet/registry.py): its entry, when it was last seen,
-- and the registry kept bounded. One call every OFFLOAD_WORKER_HEARTBEAT_SECONDS per worker
-- process, from its consumer loop; nothing per job.
-- The entry expires `ttl` seconds after this beat (the lost-worker window plus its retention);
-- ids not seen since `forget_before` leave the index, which keeps at most `max_entries` ids
-- (the most recently seen). `fields`: field, value, field, value... of the entry.
local workers_key, worker_key = unpack(KEYS)
local worker_id, now, ttl, forget_before, max_entries = unpack(ARGV, 1, 5)

local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', worker_key, 'last_seen', now, unpack(fields))
-- A worker back from a long pause (or a network split) is live again.
redis.call('HDEL', worker_key, 'lost_at')
redis.call('EXPIRE', worker_key, ttl)
redis.call('ZADD', workers_key, now, worker_id)
redis.call('ZREMRANGEBYSCORE', workers_key, '-inf', '(' .. forget_before)
local extra = redis.call('ZCARD', workers_key) - tonumber(max_entries)
if extra > 0 then redis.call('ZREMRANGEBYRANK', workers_key, 0, extra - 1) end
return 1
