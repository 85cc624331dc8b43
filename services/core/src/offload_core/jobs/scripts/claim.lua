-- Claim: take a run of a job (compare-and-set). A finished job, or one running under a live
-- lease held by another worker, is not taken. The claim records this worker as the run's owner
-- and takes the lease; a job whose run was lost on its last attempt ends `dead` here, and a job
-- whose cancel was requested ends `cancelled`.
-- `replaceable_holder`: a lease holder known to be dead (a local process), '' if none.
-- Returns {status, ...}: claimed + payload (nil when expired) + the job hash | missing
--   | terminal + state | leased + holder + pttl | cancelled | dead
local job_key, lease_key, events_key, running_key, active_key, payload_key, dead_key, counters_key, pending_key = unpack(KEYS)
local worker_id, lease_ms, now, events_maxlen, replaceable_holder, retention = unpack(ARGV)

local h = redis.call('HMGET', job_key, 'state', 'attempts', 'max_attempts', 'cancel_requested', 'id')
local state, id = h[1], h[5]
if not state then return {'missing'} end
if state == 'succeeded' or state == 'failed' or state == 'dead' or state == 'cancelled' then
  return {'terminal', state}
end
local attempts, max_attempts = tonumber(h[2] or '0'), tonumber(h[3] or '1')
if state == 'running' then
  local holder = redis.call('GET', lease_key)
  if holder and holder ~= worker_id and holder ~= replaceable_holder then
    return {'leased', holder, tostring(redis.call('PTTL', lease_key))}
  end
end
-- Its message has been delivered: the lost-message sweep need not look for it any more.
redis.call('ZREM', pending_key, id)
local function finish(new_state, err)
  redis.call('HSET', job_key, 'state', new_state, 'finished_at', now, 'error', err)
  redis.call('HDEL', job_key, 'worker')
  redis.call('DEL', lease_key)
  redis.call('ZREM', running_key, id)
  if redis.call('DECR', active_key) < 0 then redis.call('SET', active_key, 0) end
  redis.call('HINCRBY', counters_key, new_state, 1)
  for _, k in ipairs({job_key, events_key, payload_key}) do redis.call('EXPIRE', k, retention) end
  redis.call('XADD', events_key, 'MAXLEN', '~', events_maxlen, '*', 'kind', 'state',
             'data', '{"state":"' .. new_state .. '","at":' .. now .. ',"error":' .. err .. '}')
end
if h[4] == '1' then
  finish('cancelled', 'null')
  redis.call('DEL', payload_key)
  return {'cancelled'}
end
if state == 'running' and attempts >= max_attempts then
  -- The previous run's worker vanished (killed, OOM) on the last attempt: a poison job.
  finish('dead', '{"type":"WorkerLost","message":"the worker running this job was lost on every attempt","retryable":true}')
  redis.call('ZADD', dead_key, now, id)
  return {'dead'}
end
attempts = attempts + 1
redis.call('HSET', job_key, 'state', 'running', 'started_at', now, 'attempts', attempts, 'worker', worker_id)
redis.call('HDEL', job_key, 'retry_at')
redis.call('SET', lease_key, worker_id, 'PX', lease_ms)
redis.call('ZADD', running_key, now, id)
redis.call('XADD', events_key, 'MAXLEN', '~', events_maxlen, '*', 'kind', 'state',
           'data', '{"state":"running","at":' .. now .. ',"attempt":' .. attempts .. '}')
-- The payload rides along: the worker needs it next, and this saves it a round trip.
local out = {'claimed', redis.call('GET', payload_key)}
for _, v in ipairs(redis.call('HGETALL', job_key)) do out[#out + 1] = v end
return out
