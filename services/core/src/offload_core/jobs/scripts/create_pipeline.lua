-- Create a pipeline: its record and every job of every step, in one atomic step (pipelines/plan.py).
-- Checks the Idempotency-Key, then the tenant's rate (a pipeline is one submission), then its
-- unfinished-job quota (every job counts) and byte quota. A job with nothing to wait for is
-- queued (its message LPUSHed); the others are `waiting`, their message kept in their record
-- until finish.lua queues them, and sit in the waiting index scored +inf (nothing to cancel yet).
-- `jobs` is a JSON array of {key, id, fields (the record's field/value pairs), queue, message,
-- waits}; the input of job i is the i-th argument after the named ones ('' when it has none).
-- Returns {status, pipeline id}: created | existing | conflict | rate_limited | tokens_limited
--   | quota_exceeded | bytes_exceeded
local idem_key, rate_key, usage_key, pending_key, waiting_key, tenant_jobs_key, pipeline_key, tenant_pipelines_key, tpm_key = unpack(KEYS)
local pipeline_id, digest, idem_ttl, has_idem, rate_limit, rate_ttl, max_active, max_bytes, now, pipeline_fields, jobs, total_bytes, tpm_limit, tpm_cost = unpack(ARGV, 1, 14)

if has_idem == '1' then
  local seen = redis.call('GET', idem_key)
  if seen then
    local sep = string.find(seen, ' ', 1, true)
    local seen_id, seen_digest = string.sub(seen, 1, sep - 1), string.sub(seen, sep + 1)
    if seen_digest == digest then return {'existing', seen_id} end
    return {'conflict', seen_id}
  end
end
local n = redis.call('INCR', rate_key)
if n == 1 then redis.call('EXPIRE', rate_key, rate_ttl) end
if n > tonumber(rate_limit) then
  redis.call('DECR', rate_key)
  return {'rate_limited', ''}
end
-- Under a tokens-per-minute limit its LLM jobs' cost counts now, as submit.lua counts a job's.
local tpm = tonumber(tpm_limit) > 0 and tonumber(tpm_cost) > 0
if tpm then
  local used = redis.call('INCRBY', tpm_key, tpm_cost)
  if used == tonumber(tpm_cost) then redis.call('EXPIRE', tpm_key, rate_ttl) end
  if used > tonumber(tpm_limit) then
    redis.call('DECRBY', tpm_key, tpm_cost)
    redis.call('DECR', rate_key)
    return {'tokens_limited', ''}
  end
end
local function undo_rate()
  redis.call('DECR', rate_key)
  if tpm then redis.call('DECRBY', tpm_key, tpm_cost) end
end
local planned = cjson.decode(jobs)
if redis.call('HINCRBY', usage_key, 'active', #planned) > tonumber(max_active) then
  redis.call('HINCRBY', usage_key, 'active', -#planned)
  undo_rate()
  return {'quota_exceeded', ''}
end
if redis.call('HINCRBY', usage_key, 'bytes', total_bytes) > tonumber(max_bytes) then
  redis.call('HINCRBY', usage_key, 'bytes', -tonumber(total_bytes))
  redis.call('HINCRBY', usage_key, 'active', -#planned)
  undo_rate()
  return {'bytes_exceeded', ''}
end
redis.call('HSET', pipeline_key, unpack(cjson.decode(pipeline_fields)))
redis.call('ZADD', tenant_pipelines_key, now, pipeline_id)
for i, job in ipairs(planned) do
  local record = job.fields
  record[#record + 1] = 'payload'
  record[#record + 1] = ARGV[14 + i]
  if tonumber(job.waits) > 0 then
    for _, v in ipairs({'message', job.message, 'waits', job.waits}) do record[#record + 1] = v end
  end
  redis.call('HSET', job.key, unpack(record))
  redis.call('ZADD', tenant_jobs_key, now, job.id)
  if tonumber(job.waits) > 0 then
    redis.call('ZADD', waiting_key, '+inf', job.id)
  else
    redis.call('LPUSH', job.queue, job.message)
    redis.call('ZADD', pending_key, now, job.id)
  end
end
if has_idem == '1' then
  redis.call('SET', idem_key, pipeline_id .. ' ' .. digest, 'EX', idem_ttl)
end
return {'created', pipeline_id}
