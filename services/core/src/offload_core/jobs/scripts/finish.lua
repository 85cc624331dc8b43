-- Finish: every way a job leaves a run or a wait, in one place. `mode` says who asks:
--   run     the run's owner (`worker_id`) records its outcome: succeeded | failed | dead | cancelled,
--           or retrying (the job joins the delayed set until `retry_at`, with `message` to queue then)
--   cancel  the API cancels for `tenant`: a queued, scheduled, retrying or waiting job ends at once; a
--           running one is asked to stop at its next checkpoint. `worker_id` 'waiting-sweep': the
--           waiting sweep cancels a pipeline step that can no longer run, if it is still due
--   lost    the lease reaper found the run's lease lapsed (its worker is gone): the job goes back to
--           the head of its queue with `message`, or ends dead when that was its last attempt
--           (cancelled when a cancel was requested)
-- A late or duplicate caller changes nothing: each mode checks the stored state first.
-- Ending a job: the terminal event (its stream id is kept as `final_event`), the tenant's quota
-- counts, the lifetime counters, the dead-letter indexes, a webhook in the outbox if the job asked
-- for one, and the TTLs: the record lives `retention` more seconds, its events `events_grace`.
-- Succeeded and cancelled jobs drop their input; failed and dead ones keep it to be requeued.
-- A pipeline step (its record names `pipeline_key`) also moves the steps that wait for it, in the
-- same atomic step (offload_core/pipelines): a success queues each one whose last wait it was (with
-- the message kept in its record); a failure parks them until `retention` from now (a retry of
-- this job may still release them); a cancel has them cancelled by the next waiting sweep. Its
-- pipeline's counts and events follow, and the pipeline's keys expire once no job of it is open.
-- `tokens` ('' for none): an LLM result's usage as JSON {model, prompt, completion, ttl}, added
-- to the tenant's counters of the day in the same step as the result, so it is counted once.
-- A batch line's end (`batch` in its record) is added to its batch's done set while the batch
-- runs, for the batch coordinator to collect.
-- Returns {'ok', state} | {'requeued'} | {'cancelling'} | {'stale', state} | {'terminal', state}
--   | {'alive'} | {'missing'}
local job_key, events_key, running_key, usage_key, counters_key, dead_key, tenant_dead_key, delayed_key, pending_key, waiting_key, queue_key, webhooks_key, unacked_key, unacked_index_key, tokens_key = unpack(KEYS)
local mode, worker_id, tenant, new_state, now, result_json, error_json, retry_at, message, message_tag, events_maxlen, retention, events_grace, tokens = unpack(ARGV)

local h = redis.call('HMGET', job_key, 'state', 'worker', 'id', 'type', 'attempts', 'max_attempts',
                     'cancel_requested', 'payload_bytes', 'callback_url', 'message_tag', 'tenant', 'result_writes',
                     'pipeline_key', 'pipeline_events', 'step', 'page', 'next', 'batch')
local state, id, job_type = h[1], h[3], h[4]
if not state then return {'missing'} end
local not_started = state == 'queued' or state == 'scheduled' or state == 'retrying' or state == 'waiting'
local pipeline_key = h[13] or ''

local function state_event(name, extra)
  return redis.call('XADD', events_key, 'MAXLEN', '~', events_maxlen, '*', 'kind', 'state',
                    'data', '{"state":"' .. name .. '","at":' .. now .. extra .. '}')
end

if mode == 'run' then
  if state ~= 'running' or h[2] ~= worker_id then return {'stale', state} end
elseif mode == 'cancel' then
  if h[11] ~= tenant then return {'missing'} end
  if state == 'running' then
    redis.call('HSET', job_key, 'cancel_requested', '1')
    redis.call('XADD', events_key, 'MAXLEN', '~', events_maxlen, '*', 'kind', 'progress',
               'data', '{"message":"cancel requested"}')
    return {'cancelling'}
  end
  if not not_started then return {'terminal', state} end
  if worker_id == 'waiting-sweep' then -- the sweep cancels a waiting step only while it is still due
    local due = redis.call('ZSCORE', waiting_key, id)
    if state ~= 'waiting' or not due or tonumber(due) > tonumber(now) then return {'stale', state} end
  end
  new_state, error_json = 'cancelled', 'null'
  -- A queued job's message stays on its list: the worker that takes it finds the job ended.
  local index = {queued = pending_key, waiting = waiting_key}
  redis.call('ZREM', index[state] or delayed_key, id)
else -- lost
  if state ~= 'running' then return {'stale', state} end
  local lapses = redis.call('ZSCORE', running_key, id)
  if lapses and tonumber(lapses) > tonumber(now) then return {'alive'} end
  -- The worker is gone, but kombu still holds its message as unacknowledged: drop that copy, so
  -- the visibility timeout does not run the job once more.
  if h[10] and h[10] ~= '' then
    redis.call('HDEL', unacked_key, h[10])
    redis.call('ZREM', unacked_index_key, h[10])
  end
  if h[7] == '1' then
    new_state, error_json = 'cancelled', 'null'
  elseif tonumber(h[5] or '0') >= tonumber(h[6] or '1') then
    new_state = 'dead'
    error_json = '{"type":"WorkerLost","message":"the worker running this job was lost on every attempt","retryable":true}'
  else
    redis.call('ZREM', running_key, id)
    redis.call('HSET', job_key, 'state', 'queued', 'queued_at', now, 'worker', '', 'message_tag', message_tag)
    redis.call('RPUSH', queue_key, message) -- the right end: the next one a worker takes
    redis.call('ZADD', pending_key, now, id)
    redis.call('HINCRBY', counters_key, job_type .. ':recovered', 1)
    state_event('queued', ',"worker_lost":true')
    return {'requeued'}
  end
end

if state == 'running' then redis.call('ZREM', running_key, id) end
if new_state == 'retrying' then
  redis.call('HSET', job_key, 'state', 'retrying', 'error', error_json, 'retry_at', retry_at,
             'message', message, 'message_tag', message_tag)
  redis.call('ZADD', delayed_key, retry_at, id)
  redis.call('HINCRBY', counters_key, job_type .. ':retried', 1)
  state_event('retrying', ',"error":' .. error_json .. ',"retry_at":' .. retry_at)
  return {'ok', 'retrying'}
end

local final_event = state_event(new_state, ',"error":' .. error_json)
local record = {'state', new_state, 'finished_at', now, 'error', error_json, 'final_event', final_event}
if result_json ~= '' then
  for _, v in ipairs({'result', result_json, 'result_writes', tonumber(h[12] or '0') + 1}) do record[#record + 1] = v end
end
if new_state == 'succeeded' or new_state == 'cancelled' then
  for _, v in ipairs({'payload', '', 'message', ''}) do record[#record + 1] = v end
end
redis.call('HSET', job_key, unpack(record))
if tokens ~= '' and new_state == 'succeeded' then
  local t = cjson.decode(tokens)
  redis.call('HINCRBY', tokens_key, t.model .. '|prompt', t.prompt)
  redis.call('HINCRBY', tokens_key, t.model .. '|completion', t.completion)
  redis.call('HINCRBY', tokens_key, t.model .. '|jobs', 1)
  redis.call('EXPIRE', tokens_key, t.ttl)
end
if new_state == 'dead' then
  redis.call('ZADD', dead_key, now, id)
  redis.call('ZADD', tenant_dead_key, now, id)
end
if redis.call('HINCRBY', usage_key, 'active', -1) < 0 then redis.call('HSET', usage_key, 'active', 0) end
local bytes = tonumber(h[8] or '0')
if bytes > 0 and redis.call('HINCRBY', usage_key, 'bytes', -bytes) < 0 then redis.call('HSET', usage_key, 'bytes', 0) end
redis.call('HINCRBY', counters_key, job_type .. ':' .. new_state, 1)
redis.call('EXPIRE', job_key, retention)
redis.call('EXPIRE', events_key, events_grace)
if h[9] and h[9] ~= '' then redis.call('ZADD', webhooks_key, now, id .. '/' .. final_event) end
if h[18] and h[18] ~= '' then
  -- The batch's keys, as offload_core/jobs/keys.py names them.
  local batch_key = 'offload:batch:' .. h[18]
  local batch_status = redis.call('HGET', batch_key, 'status')
  if batch_status == 'in_progress' or batch_status == 'cancelling' or batch_status == 'finalizing' then
    redis.call('SADD', batch_key .. ':done', id)
  end
end
if pipeline_key == '' then return {'ok', new_state} end

-- A pipeline step: first the steps that wait for this one.
local function step_event(events, job_id, step, page, name, extra)
  redis.call('XADD', events, 'MAXLEN', '~', events_maxlen, '*', 'kind', 'state', 'data',
             '{"job":"' .. job_id .. '","step":' .. (step or 'null') .. ',"page":' .. (page or 'null')
             .. ',"state":"' .. name .. '","at":' .. now .. (extra or '') .. '}')
end
for _, dep_key in ipairs(cjson.decode(h[17] or '[]')) do
  local d = redis.call('HMGET', dep_key, 'state', 'id', 'queue', 'message', 'step', 'page')
  if d[1] == 'waiting' then
    if new_state == 'succeeded' then
      if redis.call('HINCRBY', dep_key, 'waits', -1) <= 0 then
        redis.call('LPUSH', d[3], d[4])
        redis.call('HSET', dep_key, 'state', 'queued', 'queued_at', now, 'message', '')
        redis.call('ZADD', pending_key, now, d[2])
        redis.call('ZREM', waiting_key, d[2])
        redis.call('XADD', dep_key .. ':events', 'MAXLEN', '~', events_maxlen, '*', 'kind', 'state',
                   'data', '{"state":"queued","at":' .. now .. '}')
        step_event(h[14], d[2], d[5], d[6], 'queued')
      end
    elseif new_state == 'cancelled' then
      redis.call('ZADD', waiting_key, 'LT', now, d[2])
    else
      redis.call('HINCRBY', dep_key, 'blocked', 1)
      redis.call('ZADD', waiting_key, 'LT', tonumber(now) + tonumber(retention), d[2])
    end
  end
end
-- Then the pipeline's counts, its events, and its end once no job of it is open.
local counted = {succeeded = 'succeeded', failed = 'failed', dead = 'failed', cancelled = 'cancelled'}
redis.call('HINCRBY', pipeline_key, counted[new_state], 1)
step_event(h[14], id, h[15], h[16], new_state, ',"error":' .. error_json)
if redis.call('HINCRBY', pipeline_key, 'open', -1) <= 0 then
  local p = redis.call('HMGET', pipeline_key, 'total', 'succeeded', 'failed', 'cancel_requested')
  local outcome = 'cancelled'
  if p[2] == p[1] then outcome = 'succeeded' elseif p[4] ~= '1' and tonumber(p[3] or '0') > 0 then outcome = 'failed' end
  redis.call('HSET', pipeline_key, 'ended_at', now, 'outcome', outcome)
  redis.call('XADD', h[14], 'MAXLEN', '~', events_maxlen, '*', 'kind', 'end',
             'data', '{"state":"' .. outcome .. '","at":' .. now .. '}')
  redis.call('EXPIRE', pipeline_key, retention)
  redis.call('EXPIRE', h[14], retention)
elseif new_state == 'failed' or new_state == 'dead' then
  -- Not the end (later steps are parked, a retry may go on), but a client following it must know.
  redis.call('XADD', h[14], 'MAXLEN', '~', events_maxlen, '*', 'kind', 'blocked',
             'data', '{"job":"' .. id .. '","state":"failed","at":' .. now .. '}')
end
return {'ok', new_state}
