-- Cancel, from the API: a queued or retrying job ends at once; a running one is asked to stop
-- at its next checkpoint.
-- Returns {'cancelled'} | {'cancelling'} | {'terminal', state} | {'missing'}
local job_key, events_key, payload_key, active_key, counters_key, pending_key = unpack(KEYS)
local tenant, now, events_maxlen, retention = unpack(ARGV)

local h = redis.call('HMGET', job_key, 'state', 'tenant', 'id')
if not h[1] or h[2] ~= tenant then return {'missing'} end
local state = h[1]
if state == 'queued' or state == 'retrying' then
  redis.call('HSET', job_key, 'state', 'cancelled', 'finished_at', now, 'cancel_requested', '1')
  redis.call('DEL', payload_key)
  redis.call('ZREM', pending_key, h[3])
  if redis.call('DECR', active_key) < 0 then redis.call('SET', active_key, 0) end
  redis.call('HINCRBY', counters_key, 'cancelled', 1)
  redis.call('EXPIRE', job_key, retention)
  redis.call('EXPIRE', events_key, retention)
  redis.call('XADD', events_key, 'MAXLEN', '~', events_maxlen, '*', 'kind', 'state', 'data',
             '{"state":"cancelled","at":' .. now .. '}')
  return {'cancelled'}
end
if state == 'running' then
  redis.call('HSET', job_key, 'cancel_requested', '1')
  redis.call('XADD', events_key, 'MAXLEN', '~', events_maxlen, '*', 'kind', 'progress', 'data',
             '{"message":"cancel requested"}')
  return {'cancelling'}
end
return {'terminal', state}
