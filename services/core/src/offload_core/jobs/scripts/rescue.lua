-- Rescue: put a new message on the queue of a queued job whose message was lost, unless the job
-- moved on since the sweep looked: it must still be queued, since the same time (not claimed,
-- cancelled or requeued meanwhile). The new message's tag is recorded, as for every message.
-- Returns 'rescued' | 'moved' (left alone) | 'gone' (not waiting for a message: dropped from pending)
local job_key, queue_key, events_key, counters_key, pending_key = unpack(KEYS)
local job_id, since, message, message_tag, now, events_maxlen = unpack(ARGV)

local h = redis.call('HMGET', job_key, 'state', 'type')
if h[1] ~= 'queued' then
  redis.call('ZREM', pending_key, job_id)
  return 'gone'
end
local found_since = redis.call('ZSCORE', pending_key, job_id)
if not found_since or tonumber(found_since) ~= tonumber(since) then return 'moved' end
-- The right end is the next one a worker takes: the job has waited long enough.
redis.call('RPUSH', queue_key, message)
redis.call('HSET', job_key, 'message_tag', message_tag)
redis.call('ZADD', pending_key, now, job_id)
redis.call('HINCRBY', counters_key, h[2] .. ':rescued', 1)
redis.call('XADD', events_key, 'MAXLEN', '~', events_maxlen, '*', 'kind', 'progress',
           'data', '{"message":"the queue message was lost; queued again"}')
return 'rescued'
