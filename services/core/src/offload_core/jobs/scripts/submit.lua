-- Submit: store a new job and queue its message in one atomic step.
-- Checks the Idempotency-Key, then the tenant's rate, unfinished-job quota and byte quota; then
-- writes the record (the input rides in it) and indexes the job, and either LPUSHes its Celery
-- message (`due` = '') or, for a job scheduled later, keeps the message in the record and puts
-- the job in the delayed set, where the mover finds it at its time. A 202 is therefore only ever
-- sent for a job that is both stored and queued (or scheduled).
-- No event is written: a job's first state is replayed from its record (event id 0-1).
-- `fields` is the record's field/value pairs as one JSON array: one argument, not twenty
-- (redis-py packs every argument in Python; BENCHMARKS.md, "Fifth round").
-- An LLM job under a tokens-per-minute limit (`tpm_limit` > 0) also adds `tpm_cost` (its max_tokens
-- plus a prompt estimate) to the tenant's tokens of this minute, refused beyond the limit; with
-- no limit (0) that costs nothing.
-- A batch line (`counts_rate` = '0') spends neither the rate nor the tokens per minute: its batch
-- was one request; the unfinished-job and byte quotas apply to it as to any job.
-- Returns {status, job id}: created | existing | conflict | rate_limited | tokens_limited
--   | quota_exceeded | bytes_exceeded
local idem_key, rate_key, usage_key, job_key, queue_key, pending_key, delayed_key, tenant_jobs_key, tpm_key = unpack(KEYS)
local job_id, digest, idem_ttl, has_idem, rate_limit, rate_ttl, max_active, max_bytes, now, due, fields, payload, payload_bytes, message, message_tag, tpm_limit, tpm_cost, counts_rate = unpack(ARGV)

if has_idem == '1' then
  local seen = redis.call('GET', idem_key)
  if seen then
    local sep = string.find(seen, ' ', 1, true)
    local seen_id, seen_digest = string.sub(seen, 1, sep - 1), string.sub(seen, sep + 1)
    if seen_digest == digest then return {'existing', seen_id} end
    return {'conflict', seen_id}
  end
end
local rated = counts_rate == '1'
if rated then
  local n = redis.call('INCR', rate_key)
  if n == 1 then redis.call('EXPIRE', rate_key, rate_ttl) end
  if n > tonumber(rate_limit) then
    redis.call('DECR', rate_key)
    return {'rate_limited', ''}
  end
end
local tpm = rated and tonumber(tpm_limit) > 0
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
  if not rated then return end
  redis.call('DECR', rate_key)
  if tpm then redis.call('DECRBY', tpm_key, tpm_cost) end
end
if redis.call('HINCRBY', usage_key, 'active', 1) > tonumber(max_active) then
  redis.call('HINCRBY', usage_key, 'active', -1)
  undo_rate()
  return {'quota_exceeded', ''}
end
if redis.call('HINCRBY', usage_key, 'bytes', payload_bytes) > tonumber(max_bytes) then
  redis.call('HINCRBY', usage_key, 'bytes', -tonumber(payload_bytes))
  redis.call('HINCRBY', usage_key, 'active', -1)
  undo_rate()
  return {'bytes_exceeded', ''}
end
local record = cjson.decode(fields)
for _, v in ipairs({'payload', payload, 'message_tag', message_tag}) do record[#record + 1] = v end
if due ~= '' then
  record[#record + 1] = 'message'
  record[#record + 1] = message
end
redis.call('HSET', job_key, unpack(record))
redis.call('ZADD', tenant_jobs_key, now, job_id)
if due ~= '' then
  redis.call('ZADD', delayed_key, due, job_id)
else
  redis.call('LPUSH', queue_key, message)
  redis.call('ZADD', pending_key, now, job_id)
end
if has_idem == '1' then
  redis.call('SET', idem_key, job_id .. ' ' .. digest, 'EX', idem_ttl)
end
return {'created', job_id}
