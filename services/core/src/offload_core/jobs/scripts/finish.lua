-- Finish: the end of a run, or its move to `retrying`. Only the run's current owner may write,
-- so however many deliveries there are, a result is written once.
-- result_json: '' for none; error_json: 'null' for none; retry_at: for `retrying`.
-- Returns {'ok'} or {'stale', current state}: someone else owns the run now, nothing written.
local job_key, result_key, payload_key, events_key, lease_key, running_key, dead_key, active_key, counters_key, pending_key = unpack(KEYS)
local worker_id, new_state, now, result_json, error_json, events_maxlen, retention, retry_at = unpack(ARGV)

local h = redis.call('HMGET', job_key, 'state', 'worker', 'id')
if h[1] ~= 'running' or h[2] ~= worker_id then return {'stale', h[1] or 'missing'} end
local id = h[3]
redis.call('DEL', lease_key)
redis.call('ZREM', running_key, id)
redis.call('HDEL', job_key, 'worker')
if new_state == 'retrying' then
  redis.call('HSET', job_key, 'state', 'retrying', 'error', error_json, 'retry_at', retry_at)
  redis.call('HINCRBY', counters_key, 'retried', 1)
  -- The retry's message is due on its queue from retry_at on (the sweep looks for it after that).
  redis.call('ZADD', pending_key, retry_at, id)
  redis.call('XADD', events_key, 'MAXLEN', '~', events_maxlen, '*', 'kind', 'state', 'data',
             '{"state":"retrying","at":' .. now .. ',"error":' .. error_json .. ',"retry_at":' .. retry_at .. '}')
  return {'ok'}
end
redis.call('HSET', job_key, 'state', new_state, 'finished_at', now, 'error', error_json)
if result_json ~= '' then
  redis.call('SET', result_key, result_json, 'EX', retention)
  redis.call('HINCRBY', job_key, 'result_writes', 1)
end
if new_state == 'dead' then redis.call('ZADD', dead_key, now, id) end
if new_state == 'succeeded' or new_state == 'cancelled' then
  redis.call('DEL', payload_key)
else
  -- failed and dead jobs keep their payload until retention, so they can be requeued
  redis.call('EXPIRE', payload_key, retention)
end
if redis.call('DECR', active_key) < 0 then redis.call('SET', active_key, 0) end
redis.call('HINCRBY', counters_key, new_state, 1)
redis.call('EXPIRE', job_key, retention)
redis.call('EXPIRE', events_key, retention)
redis.call('XADD', events_key, 'MAXLEN', '~', events_maxlen, '*', 'kind', 'state', 'data',
           '{"state":"' .. new_state .. '","at":' .. now .. ',"error":' .. error_json .. '}')
return {'ok'}
