-- Claim: take a run of a job (compare-and-set) and its lease. A finished job is not taken, nor a
-- job waiting in the delayed set (its message is stale: the mover queues it at its time), nor a
-- job running under a live lease held by another worker. A running job whose lease lapsed, or
-- whose holder is a process known to be dead (`replaceable_holder`, '' if none), is taken over.
-- The lease is the job's score in its type's running set: the time it lapses unless renewed.
-- The claim answers with the record (the input rides in it) and an intent for the runner:
--   run     run the job (attempts counted, a `running` event written)
--   lost    the previous run was lost on the job's last attempt: end it dead, do not run it
--   cancel  a cancel was requested before this run: end it cancelled, do not run it
-- Returns {'claimed', intent, field, value, ...} | {'missing'} | {'terminal', state}
--   | {'waiting', state} | {'leased', holder, seconds left}
local job_key, running_key, pending_key, events_key = unpack(KEYS)
local worker_id, now, lease_seconds, events_maxlen, replaceable_holder = unpack(ARGV)

local flat = redis.call('HGETALL', job_key)
if #flat == 0 then return {'missing'} end
local h = {}
for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
local state = h['state']
if state == 'succeeded' or state == 'failed' or state == 'dead' or state == 'cancelled' then
  return {'terminal', state}
end
if state == 'scheduled' or state == 'retrying' or state == 'waiting' then return {'waiting', state} end
local attempts, max_attempts = tonumber(h['attempts'] or '0'), tonumber(h['max_attempts'] or '1')
local intent = 'run'
if state == 'running' then
  local lapses = redis.call('ZSCORE', running_key, h['id'])
  local holder = h['worker'] or ''
  if lapses and tonumber(lapses) > tonumber(now) and holder ~= worker_id and holder ~= replaceable_holder then
    return {'leased', holder, tostring(tonumber(lapses) - tonumber(now))}
  end
  if attempts >= max_attempts then intent = 'lost' end
else
  -- Its message has been delivered: the lost-message sweep need not look for it any more.
  redis.call('ZREM', pending_key, h['id'])
end
if h['cancel_requested'] == '1' then intent = 'cancel' end
if intent == 'run' then attempts = attempts + 1 end
h['state'], h['started_at'], h['attempts'], h['worker'] = 'running', now, tostring(attempts), worker_id
redis.call('HSET', job_key, 'state', 'running', 'started_at', now, 'attempts', attempts, 'worker', worker_id)
redis.call('ZADD', running_key, tonumber(now) + tonumber(lease_seconds), h['id'])
if intent == 'run' then
  redis.call('XADD', events_key, 'MAXLEN', '~', events_maxlen, '*', 'kind', 'state',
             'data', '{"state":"running","at":' .. now .. ',"attempt":' .. attempts .. '}')
  if h['pipeline_events'] then -- a pipeline step: its pipeline's followers see it start
    redis.call('XADD', h['pipeline_events'], 'MAXLEN', '~', events_maxlen, '*', 'kind', 'state', 'data',
               '{"job":"' .. h['id'] .. '","step":' .. h['step'] .. ',"page":' .. (h['page'] or 'null')
               .. ',"state":"running","at":' .. now .. ',"attempt":' .. attempts .. '}')
  end
end
local out = {'claimed', intent}
for k, v in pairs(h) do
  out[#out + 1] = k
  out[#out + 1] = v
end
return out
