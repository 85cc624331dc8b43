-- Purge one dead job for good (POST /v1/dead-letters/purge, admin keys): its record and events
-- are deleted, it leaves the dead-letter sets and its tenant's job list, and its Idempotency-Key
-- is forgotten (a resubmission with it makes a new job). A job that is no longer dead (requeued
-- meanwhile) is left alone. The caller read the job's tenant and key to name these KEYS.
-- Returns {'purged', payload_ref or ''} | {'not_dead', state} | {'missing'}
local job_key, events_key, dead_key, tenant_dead_key, tenant_jobs_key, idem_key = unpack(KEYS)
local job_id = unpack(ARGV)

local h = redis.call('HMGET', job_key, 'state', 'payload_ref')
if not h[1] then return {'missing'} end
if h[1] ~= 'dead' then return {'not_dead', h[1]} end
redis.call('DEL', job_key, events_key)
redis.call('ZREM', dead_key, job_id)
redis.call('ZREM', tenant_dead_key, job_id)
redis.call('ZREM', tenant_jobs_key, job_id)
if idem_key ~= '' then
  local idem = redis.call('GET', idem_key)
  if idem and string.sub(idem, 1, #job_id) == job_id then redis.call('DEL', idem_key) end
end
return {'purged', h[2] or ''}
