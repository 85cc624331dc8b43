-- Move: queue a job from the delayed set once it is due: a scheduled job at its time, a retrying
-- one when its backoff ended. The message was built when the job started to wait and kept in its
-- record; it goes to the back of the job's queue, like any new job. Does nothing if the job is
-- not due yet or no longer waits (cancelled meanwhile: it just leaves the set).
-- Returns 'moved' | 'not_due' | 'gone'
local job_key, events_key, delayed_key, pending_key, queue_key = unpack(KEYS)
local job_id, now, events_maxlen = unpack(ARGV)

local due = redis.call('ZSCORE', delayed_key, job_id)
if not due or tonumber(due) > tonumber(now) then return 'not_due' end
local h = redis.call('HMGET', job_key, 'state', 'message')
if (h[1] ~= 'scheduled' and h[1] ~= 'retrying') or not h[2] or h[2] == '' then
  redis.call('ZREM', delayed_key, job_id)
  return 'gone'
end
redis.call('LPUSH', queue_key, h[2])
redis.call('HSET', job_key, 'state', 'queued', 'queued_at', now, 'message', '')
redis.call('ZADD', pending_key, now, job_id)
redis.call('ZREM', delayed_key, job_id)
redis.call('XADD', events_key, 'MAXLEN', '~', events_maxlen, '*', 'kind', 'state',
           'data', '{"state":"queued","at":' .. now .. '}')
return 'moved'
