-- Rescue: put a new message on the queue of a job whose message was lost, unless the job moved
-- on since the sweep looked. A waiting job (queued, retrying) must still be waiting since the
-- same time (not claimed, cancelled or retried meanwhile); a running one must still have no
-- lease (no worker renews it) and the same start time.
-- index_key: where the sweep found it (pending or running); since: its time in that index;
-- how: 'waiting' | 'running'.
-- Returns 'rescued' | 'moved' (left alone) | 'gone' (not waiting for a message: dropped from pending)
local job_key, index_key, queue_key, events_key, counters_key, lease_key, pending_key = unpack(KEYS)
local job_id, since, message, now, events_maxlen, how = unpack(ARGV)

local state = redis.call('HGET', job_key, 'state')
if how == 'running' then
  if state ~= 'running' or redis.call('EXISTS', lease_key) == 1 then return 'moved' end
elseif state ~= 'queued' and state ~= 'retrying' then
  redis.call('ZREM', pending_key, job_id)
  return 'gone'
end
local found_since = redis.call('ZSCORE', index_key, job_id)
if not found_since or tonumber(found_since) ~= tonumber(since) then return 'moved' end
-- The right end is the next one a worker takes: the job has waited long enough.
redis.call('RPUSH', queue_key, message)
if how ~= 'running' then redis.call('ZADD', pending_key, now, job_id) end
redis.call('HINCRBY', counters_key, 'rescued', 1)
redis.call('XADD', events_key, 'MAXLEN', '~', events_maxlen, '*', 'kind', 'progress', 'data',
           '{"message":"the queue message was lost; queued again"}')
return 'rescued'
