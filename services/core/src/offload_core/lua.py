"""Lua scripts: every change of a job's state is one atomic script (compare-and-set).

A late or duplicate delivery cannot move a finished job, because each script checks the stored
state (and, for a worker, that it still owns the run) before it writes anything. Each script
also appends the matching event to the job's capped stream and keeps the indexes (running,
dead, tenant's active count) in step, so no reader ever sees a half-made change.

Events are stream entries with two fields: `kind` (state | progress | token) and `data` (JSON).
"""

from __future__ import annotations

# Shared helpers, prepended to every script.
_PRELUDE = r"""
local function event(key, maxlen, kind, data)
  return redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', 'kind', kind, 'data', data)
end
local function state_event(key, maxlen, state, now, extra)
  local body = '{"state":"' .. state .. '","at":' .. now
  if extra and extra ~= '' then body = body .. ',' .. extra end
  return event(key, maxlen, 'state', body .. '}')
end
local function decr_floor(key)
  local n = redis.call('DECR', key)
  if n < 0 then redis.call('SET', key, 0) end
end
"""

# KEYS: 1 idem, 2 rate, 3 active, 4 job, 5 payload, 6 events, 7 tenant jobs, 8 queue, 9 counters,
#   10 pending
# ARGV: 1 job id, 2 body digest, 3 idem ttl, 4 rate limit/min, 5 max active, 6 now,
#       7 payload, 8 queue message, 9 events maxlen, 10 retention, 11 has idem key ("1"/"0"),
#       12 rate key ttl, 13 the record's field/value pairs as one JSON array (one argument, not
#       twenty: redis-py packs every argument in Python, BENCHMARKS.md "Fifth round")
# Returns {status, job id}: created | existing | conflict | rate_limited | quota_exceeded
SUBMIT = _PRELUDE + r"""
if ARGV[11] == '1' then
  local seen = redis.call('GET', KEYS[1])
  if seen then
    local sep = string.find(seen, ' ', 1, true)
    local id, digest = string.sub(seen, 1, sep - 1), string.sub(seen, sep + 1)
    if digest == ARGV[2] then return {'existing', id} end
    return {'conflict', id}
  end
end
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('EXPIRE', KEYS[2], ARGV[12]) end
if n > tonumber(ARGV[4]) then
  redis.call('DECR', KEYS[2])
  return {'rate_limited', ''}
end
local active = tonumber(redis.call('GET', KEYS[3]) or '0')
if active >= tonumber(ARGV[5]) then
  redis.call('DECR', KEYS[2])
  return {'quota_exceeded', ''}
end
redis.call('HSET', KEYS[4], unpack(cjson.decode(ARGV[13])))
redis.call('EXPIRE', KEYS[4], ARGV[10])
redis.call('SET', KEYS[5], ARGV[7], 'EX', ARGV[10])
state_event(KEYS[6], ARGV[9], 'queued', ARGV[6], '')
redis.call('EXPIRE', KEYS[6], ARGV[10])
redis.call('ZADD', KEYS[7], ARGV[6], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', tonumber(ARGV[6]) - tonumber(ARGV[10]))
redis.call('INCR', KEYS[3])
redis.call('LPUSH', KEYS[8], ARGV[8])
redis.call('ZADD', KEYS[10], ARGV[6], ARGV[1])
if ARGV[11] == '1' then
  redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'EX', ARGV[3])
end
redis.call('HINCRBY', KEYS[9], 'submitted', 1)
return {'created', ARGV[1]}
"""

# KEYS: 1 job, 2 lease, 3 events, 4 running, 5 active, 6 payload, 7 dead, 8 counters, 9 pending
# ARGV: 1 worker id, 2 lease ms, 3 now, 4 events maxlen, 5 holder allowed to be replaced ('' if none),
#       6 retention
# Returns {status, ...}: claimed + payload (nil when expired) + job hash | missing | terminal state
#   | leased holder pttl
#   | cancelled | dead (the run was lost more often than max_attempts allows)
CLAIM = _PRELUDE + r"""
local h = redis.call('HMGET', KEYS[1], 'state', 'attempts', 'max_attempts', 'cancel_requested', 'id')
local state, id = h[1], h[5]
if not state then return {'missing'} end
if state == 'succeeded' or state == 'failed' or state == 'dead' or state == 'cancelled' then
  return {'terminal', state}
end
local attempts, max_attempts = tonumber(h[2] or '0'), tonumber(h[3] or '1')
if state == 'running' then
  local holder = redis.call('GET', KEYS[2])
  if holder and holder ~= ARGV[1] and holder ~= ARGV[5] then
    return {'leased', holder, tostring(redis.call('PTTL', KEYS[2]))}
  end
end
-- Its message has been delivered: the lost-message sweep need not look for it any more.
redis.call('ZREM', KEYS[9], id)
local function finish(new_state, err)
  redis.call('HSET', KEYS[1], 'state', new_state, 'finished_at', ARGV[3], 'error', err)
  redis.call('HDEL', KEYS[1], 'worker')
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[4], id)
  decr_floor(KEYS[5])
  redis.call('HINCRBY', KEYS[8], new_state, 1)
  for _, k in ipairs({KEYS[1], KEYS[3], KEYS[6]}) do redis.call('EXPIRE', k, ARGV[6]) end
  state_event(KEYS[3], ARGV[4], new_state, ARGV[3], '"error":' .. err)
end
if h[4] == '1' then
  finish('cancelled', 'null')
  redis.call('DEL', KEYS[6])
  return {'cancelled'}
end
if state == 'running' and attempts >= max_attempts then
  -- The previous run's worker vanished (killed, OOM) on the last attempt: a poison job.
  finish('dead', '{"type":"WorkerLost","message":"the worker running this job was lost on every attempt","retryable":true}')
  redis.call('ZADD', KEYS[7], ARGV[3], id)
  return {'dead'}
end
attempts = attempts + 1
redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[3], 'attempts', attempts, 'worker', ARGV[1])
redis.call('HDEL', KEYS[1], 'retry_at')
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], id)
state_event(KEYS[3], ARGV[4], 'running', ARGV[3], '"attempt":' .. attempts)
-- The payload rides along: the worker needs it next, and this saves it a round trip.
local out = {'claimed', redis.call('GET', KEYS[6])}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do out[#out + 1] = v end
return out
"""

# KEYS: 1 lease, 2 job ; ARGV: 1 worker id, 2 lease ms
# Returns {owned 0/1, cancel_requested 0/1}
HEARTBEAT = r"""
local owned = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2]); owned = 1
elseif redis.call('HGET', KEYS[2], 'worker') == ARGV[1] and redis.call('HGET', KEYS[2], 'state') == 'running' then
  -- The lease lapsed (a long pause) but nobody took the job over: take the lease back.
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]); owned = 1
end
local cancel = 0
if redis.call('HGET', KEYS[2], 'cancel_requested') == '1' then cancel = 1 end
return {owned, cancel}
"""

# KEYS: 1 job, 2 events ; ARGV: 1 worker id, 2 progress json, 3 maxlen
# Returns cancel_requested (0/1), or -1 when this worker no longer owns the run.
PROGRESS = _PRELUDE + r"""
local h = redis.call('HMGET', KEYS[1], 'state', 'worker', 'cancel_requested')
if h[1] ~= 'running' or h[2] ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'progress', ARGV[2])
event(KEYS[2], ARGV[3], 'progress', ARGV[2])
if h[3] == '1' then return 1 end
return 0
"""

# KEYS: 1 job, 2 events ; ARGV: 1 worker id, 2 maxlen, 3.. token texts (JSON bodies)
TOKENS = _PRELUDE + r"""
local h = redis.call('HMGET', KEYS[1], 'state', 'worker', 'cancel_requested')
if h[1] ~= 'running' or h[2] ~= ARGV[1] then return -1 end
for i = 3, #ARGV do event(KEYS[2], ARGV[2], 'token', ARGV[i]) end
if h[3] == '1' then return 1 end
return 0
"""

# End of a run. KEYS: 1 job, 2 result, 3 payload, 4 events, 5 lease, 6 running, 7 dead,
#   8 active, 9 counters, 10 pending
# ARGV: 1 worker id, 2 new state, 3 now, 4 result json ('' for none), 5 error json ('null'),
#   6 maxlen, 7 retention, 8 retry_at (for retrying)
# Returns {'ok'} or {'stale', current state}: someone else owns the run now, nothing written.
FINISH = _PRELUDE + r"""
local h = redis.call('HMGET', KEYS[1], 'state', 'worker', 'id')
if h[1] ~= 'running' or h[2] ~= ARGV[1] then return {'stale', h[1] or 'missing'} end
local new_state, id = ARGV[2], h[3]
redis.call('DEL', KEYS[5])
redis.call('ZREM', KEYS[6], id)
redis.call('HDEL', KEYS[1], 'worker')
if new_state == 'retrying' then
  redis.call('HSET', KEYS[1], 'state', 'retrying', 'error', ARGV[5], 'retry_at', ARGV[8])
  redis.call('HINCRBY', KEYS[9], 'retried', 1)
  -- The retry's message is due on its queue from retry_at on (the sweep looks for it after that).
  redis.call('ZADD', KEYS[10], ARGV[8], id)
  state_event(KEYS[4], ARGV[6], 'retrying', ARGV[3], '"error":' .. ARGV[5] .. ',"retry_at":' .. ARGV[8])
  return {'ok'}
end
redis.call('HSET', KEYS[1], 'state', new_state, 'finished_at', ARGV[3], 'error', ARGV[5])
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[7])
  redis.call('HINCRBY', KEYS[1], 'result_writes', 1)
end
if new_state == 'dead' then redis.call('ZADD', KEYS[7], ARGV[3], id) end
if new_state == 'succeeded' or new_state == 'cancelled' then
  redis.call('DEL', KEYS[3])
else
  -- failed and dead jobs keep their payload until retention, so they can be requeued
  redis.call('EXPIRE', KEYS[3], ARGV[7])
end
decr_floor(KEYS[8])
redis.call('HINCRBY', KEYS[9], new_state, 1)
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('EXPIRE', KEYS[4], ARGV[7])
state_event(KEYS[4], ARGV[6], new_state, ARGV[3], '"error":' .. ARGV[5])
return {'ok'}
"""

# Cancel from the API. KEYS: 1 job, 2 events, 3 payload, 4 active, 5 counters, 6 pending
# ARGV: 1 tenant, 2 now, 3 maxlen, 4 retention
# Returns {'cancelled'} | {'cancelling'} | {'terminal', state} | {'missing'}
CANCEL = _PRELUDE + r"""
local h = redis.call('HMGET', KEYS[1], 'state', 'tenant', 'id')
if not h[1] or h[2] ~= ARGV[1] then return {'missing'} end
local state = h[1]
if state == 'queued' or state == 'retrying' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[2], 'cancel_requested', '1')
  redis.call('DEL', KEYS[3])
  redis.call('ZREM', KEYS[6], h[3])
  decr_floor(KEYS[4])
  redis.call('HINCRBY', KEYS[5], 'cancelled', 1)
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  state_event(KEYS[2], ARGV[3], 'cancelled', ARGV[2], '')
  return {'cancelled'}
end
if state == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  event(KEYS[2], ARGV[3], 'progress', '{"message":"cancel requested"}')
  return {'cancelling'}
end
return {'terminal', state}
"""

# Requeue a failed or dead job. KEYS: 1 job, 2 events, 3 payload, 4 active, 5 dead, 6 queue,
#   7 counters, 8 pending ; ARGV: 1 tenant ('' = any tenant: an admin), 2 now, 3 message, 4 maxlen,
#   5 max active, 6 retention, 7 trace id of the requeue ('' = none)
# Returns {'queued'} | {'terminal', state} | {'missing'} | {'expired'} | {'quota_exceeded'}
REQUEUE = _PRELUDE + r"""
local h = redis.call('HMGET', KEYS[1], 'state', 'tenant', 'id')
if not h[1] or (ARGV[1] ~= '' and h[2] ~= ARGV[1]) then return {'missing'} end
if h[1] ~= 'failed' and h[1] ~= 'dead' then return {'not_requeueable', h[1]} end
if redis.call('EXISTS', KEYS[3]) == 0 then return {'expired'} end
if tonumber(redis.call('GET', KEYS[4]) or '0') >= tonumber(ARGV[5]) then return {'quota_exceeded'} end
redis.call('HSET', KEYS[1], 'state', 'queued', 'queued_at', ARGV[2], 'attempts', 0)
redis.call('HDEL', KEYS[1], 'error', 'started_at', 'finished_at', 'retry_at', 'progress', 'cancel_requested', 'worker', 'webhook')
redis.call('ZREM', KEYS[5], h[3])
redis.call('INCR', KEYS[4])
redis.call('LPUSH', KEYS[6], ARGV[3])
redis.call('ZADD', KEYS[8], ARGV[2], h[3])
redis.call('HINCRBY', KEYS[7], 'requeued', 1)
for _, k in ipairs({KEYS[1], KEYS[2], KEYS[3]}) do redis.call('EXPIRE', k, ARGV[6]) end
-- The next run joins the requeue request's trace: the record names that trace, and the event
-- names the one before, so neither run's trace is lost.
local extra = '"requeued":true'
if ARGV[7] ~= '' then
  local previous = redis.call('HGET', KEYS[1], 'trace_id')
  redis.call('HSET', KEYS[1], 'trace_id', ARGV[7])
  if previous and previous ~= '' then extra = extra .. ',"previous_trace_id":"' .. previous .. '"' end
end
state_event(KEYS[2], ARGV[4], 'queued', ARGV[2], extra)
return {'queued'}
"""

# The lost-message sweep (offload_core.sweeper). Reads one chunk of a queue list or of kombu's
# unacknowledged-message hash and returns the job ids its messages carry (the Celery task id is
# the job id; it is the first "id" key of a message's JSON, whose body is base64). Chunks keep
# each call short, so Redis never blocks on a long backlog.
# KEYS: 1 the list or hash ; ARGV: 1 'list' | 'hash', 2 start index | HSCAN cursor, 3 count
# Returns {next ('0' at the end), id, ...} ('' for an entry without an id)
MESSAGE_IDS = r"""
local out = {}
local entries
if ARGV[1] == 'list' then
  local start, count = tonumber(ARGV[2]), tonumber(ARGV[3])
  entries = redis.call('LRANGE', KEYS[1], start, start + count - 1)
  if #entries < count then out[1] = '0' else out[1] = tostring(start + #entries) end
else
  local reply = redis.call('HSCAN', KEYS[1], ARGV[2], 'COUNT', ARGV[3])
  out[1] = reply[1]
  entries = {}
  for i = 2, #reply[2], 2 do entries[#entries + 1] = reply[2][i] end
end
for _, m in ipairs(entries) do out[#out + 1] = string.match(m, '"id": ?"([^"]+)"') or '' end
return out
"""

# Put a new message on the queue of a job whose message was lost, unless the job moved on since
# the sweep looked. A waiting job (queued, retrying) must still be waiting since the same time
# (not claimed, cancelled or retried meanwhile); a running one must still have no lease (no
# worker renews it) and the same start time.
# KEYS: 1 job, 2 the index the sweep found it in (pending or running), 3 queue, 4 events,
#   5 counters, 6 lease, 7 pending
# ARGV: 1 job id, 2 its time in that index, 3 message, 4 now, 5 events maxlen, 6 'waiting' | 'running'
# Returns 'rescued' | 'moved' (left alone) | 'gone' (not waiting for a message: dropped from pending)
RESCUE = _PRELUDE + r"""
local state = redis.call('HGET', KEYS[1], 'state')
if ARGV[6] == 'running' then
  if state ~= 'running' or redis.call('EXISTS', KEYS[6]) == 1 then return 'moved' end
elseif state ~= 'queued' and state ~= 'retrying' then
  redis.call('ZREM', KEYS[7], ARGV[1])
  return 'gone'
end
local since = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not since or tonumber(since) ~= tonumber(ARGV[2]) then return 'moved' end
-- The right end is the next one a worker takes: the job has waited long enough.
redis.call('RPUSH', KEYS[3], ARGV[3])
if ARGV[6] ~= 'running' then redis.call('ZADD', KEYS[7], ARGV[4], ARGV[1]) end
redis.call('HINCRBY', KEYS[5], 'rescued', 1)
event(KEYS[4], ARGV[5], 'progress', '{"message":"the queue message was lost; queued again"}')
return 'rescued'
"""
