-- Submit: store a new job and queue its message in one atomic step.
-- Checks the Idempotency-Key, then the tenant's rate and queued-job quota; then writes the
-- record, the payload and the first event, indexes the job and LPUSHes its Celery message.
-- A 202 is therefore only ever sent for a job that is both stored and queued.
-- `fields` is the record's field/value pairs as one JSON array: one argument, not twenty
-- (redis-py packs every argument in Python; BENCHMARKS.md, "Fifth round").
-- Returns {status, job id}: created | existing | conflict | rate_limited | quota_exceeded
local idem_key, rate_key, active_key, job_key, payload_key, events_key, tenant_jobs_key, queue_key, counters_key, pending_key = unpack(KEYS)
local job_id, digest, idem_ttl, rate_limit, max_active, now, payload, message, events_maxlen, retention, has_idem, rate_ttl, fields = unpack(ARGV)

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
if tonumber(redis.call('GET', active_key) or '0') >= tonumber(max_active) then
  redis.call('DECR', rate_key)
  return {'quota_exceeded', ''}
end
redis.call('HSET', job_key, unpack(cjson.decode(fields)))
redis.call('EXPIRE', job_key, retention)
redis.call('SET', payload_key, payload, 'EX', retention)
redis.call('XADD', events_key, 'MAXLEN', '~', events_maxlen, '*', 'kind', 'state', 'data', '{"state":"queued","at":' .. now .. '}')
redis.call('EXPIRE', events_key, retention)
redis.call('ZADD', tenant_jobs_key, now, job_id)
redis.call('ZREMRANGEBYSCORE', tenant_jobs_key, '-inf', tonumber(now) - tonumber(retention))
redis.call('INCR', active_key)
redis.call('LPUSH', queue_key, message)
redis.call('ZADD', pending_key, now, job_id)
if has_idem == '1' then
  redis.call('SET', idem_key, job_id .. ' ' .. digest, 'EX', idem_ttl)
end
redis.call('HINCRBY', counters_key, 'submitted', 1)
return {'created', job_id}
