-- Requeue a failed or dead job (POST /v1/jobs/{id}/retry). tenant: '' acts for an admin (any
-- tenant's job). trace_id: the requeue request's trace ('' for none): the next run joins it.
-- Returns {'queued'} | {'not_requeueable', state} | {'missing'} | {'expired'} | {'quota_exceeded'}
local job_key, events_key, payload_key, active_key, dead_key, queue_key, counters_key, pending_key = unpack(KEYS)
local tenant, now, message, events_maxlen, max_active, retention, trace_id = unpack(ARGV)

local h = redis.call('HMGET', job_key, 'state', 'tenant', 'id')
if not h[1] or (tenant ~= '' and h[2] ~= tenant) then return {'missing'} end
if h[1] ~= 'failed' and h[1] ~= 'dead' then return {'not_requeueable', h[1]} end
if redis.call('EXISTS', payload_key) == 0 then return {'expired'} end
if tonumber(redis.call('GET', active_key) or '0') >= tonumber(max_active) then return {'quota_exceeded'} end
redis.call('HSET', job_key, 'state', 'queued', 'queued_at', now, 'attempts', 0)
redis.call('HDEL', job_key, 'error', 'started_at', 'finished_at', 'retry_at', 'progress', 'cancel_requested', 'worker', 'webhook')
redis.call('ZREM', dead_key, h[3])
redis.call('INCR', active_key)
redis.call('LPUSH', queue_key, message)
redis.call('ZADD', pending_key, now, h[3])
redis.call('HINCRBY', counters_key, 'requeued', 1)
for _, k in ipairs({job_key, events_key, payload_key}) do redis.call('EXPIRE', k, retention) end
-- The next run joins the requeue request's trace: the record names that trace, and the event
-- names the one before, so neither run's trace is lost.
local extra = '"requeued":true'
if trace_id ~= '' then
  local previous = redis.call('HGET', job_key, 'trace_id')
  redis.call('HSET', job_key, 'trace_id', trace_id)
  if previous and previous ~= '' then extra = extra .. ',"previous_trace_id":"' .. previous .. '"' end
end
redis.call('XADD', events_key, 'MAXLEN', '~', events_maxlen, '*', 'kind', 'state', 'data',
           '{"state":"queued","at":' .. now .. ',' .. extra .. '}')
return {'queued'}
