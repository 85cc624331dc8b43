-- Requeue a failed or dead job (POST /v1/jobs/{id}/retry). tenant: '' acts for an admin (any
-- tenant's job; `usage_key` and `tenant_dead_key` must then be the job's own tenant's, which the
-- caller read first). trace_id: the requeue request's trace ('' for none): the next run joins it.
-- The job counts toward its tenant's quotas again, and its keys stop expiring. A pipeline step
-- reopens its pipeline (finish.lua parked the steps after it; they wait for it again).
-- Returns {'queued'} | {'not_requeueable', state} | {'missing'} | {'expired'} | {'quota_exceeded'}
--   | {'bytes_exceeded'}
local job_key, events_key, usage_key, dead_key, tenant_dead_key, queue_key, pending_key, waiting_key = unpack(KEYS)
local tenant, now, message, message_tag, events_maxlen, max_active, max_bytes, trace_id = unpack(ARGV)

local h = redis.call('HMGET', job_key, 'state', 'tenant', 'id', 'payload_bytes', 'payload_ref', 'trace_id')
if not h[1] or (tenant ~= '' and h[2] ~= tenant) then return {'missing'} end
if h[1] ~= 'failed' and h[1] ~= 'dead' then return {'not_requeueable', h[1]} end
if redis.call('HSTRLEN', job_key, 'payload') == 0 and (not h[5] or h[5] == '') then return {'expired'} end
if redis.call('HINCRBY', usage_key, 'active', 1) > tonumber(max_active) then
  redis.call('HINCRBY', usage_key, 'active', -1)
  return {'quota_exceeded'}
end
local bytes = tonumber(h[4] or '0')
if redis.call('HINCRBY', usage_key, 'bytes', bytes) > tonumber(max_bytes) then
  redis.call('HINCRBY', usage_key, 'bytes', -bytes)
  redis.call('HINCRBY', usage_key, 'active', -1)
  return {'bytes_exceeded'}
end
redis.call('HSET', job_key, 'state', 'queued', 'queued_at', now, 'attempts', 0, 'message_tag', message_tag)
redis.call('HDEL', job_key, 'error', 'started_at', 'finished_at', 'retry_at', 'progress', 'cancel_requested',
           'worker', 'webhook', 'final_event')
redis.call('PERSIST', job_key)
redis.call('PERSIST', events_key)
redis.call('ZREM', dead_key, h[3])
redis.call('ZREM', tenant_dead_key, h[3])
redis.call('LPUSH', queue_key, message)
redis.call('ZADD', pending_key, now, h[3])
-- The next run joins the requeue request's trace: the record names that trace, and the event
-- names the one before, so neither run's trace is lost.
local extra = ',"requeued":true'
if trace_id ~= '' then
  redis.call('HSET', job_key, 'trace_id', trace_id)
  if h[6] and h[6] ~= '' then extra = extra .. ',"previous_trace_id":"' .. h[6] .. '"' end
end
redis.call('XADD', events_key, 'MAXLEN', '~', events_maxlen, '*', 'kind', 'state',
           'data', '{"state":"queued","at":' .. now .. extra .. '}')
local p = redis.call('HMGET', job_key, 'pipeline_key', 'pipeline_events', 'next', 'step', 'page')
if p[1] then
  -- A pipeline step: its pipeline is open again, and the steps parked behind it can run once no
  -- other step they wait for has failed.
  for _, dep_key in ipairs(cjson.decode(p[3] or '[]')) do
    local d = redis.call('HMGET', dep_key, 'state', 'id')
    if d[1] == 'waiting' and redis.call('HINCRBY', dep_key, 'blocked', -1) <= 0 then
      redis.call('ZADD', waiting_key, 'XX', '+inf', d[2])
    end
  end
  redis.call('HINCRBY', p[1], 'open', 1)
  redis.call('HINCRBY', p[1], 'failed', -1)
  redis.call('HDEL', p[1], 'ended_at', 'outcome')
  redis.call('PERSIST', p[1])
  redis.call('PERSIST', p[2])
  redis.call('XADD', p[2], 'MAXLEN', '~', events_maxlen, '*', 'kind', 'state', 'data',
             '{"job":"' .. h[3] .. '","step":' .. p[4] .. ',"page":' .. (p[5] or 'null')
             .. ',"state":"queued","at":' .. now .. ',"requeued":true}')
end
return {'queued'}
