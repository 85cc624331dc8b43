-- Progress: record a running job's progress and append it as an event.
-- Returns cancel_requested (0/1), or -1 when this worker no longer owns the run.
local job_key, events_key = unpack(KEYS)
local worker_id, progress, events_maxlen = unpack(ARGV)

local h = redis.call('HMGET', job_key, 'state', 'worker', 'cancel_requested')
if h[1] ~= 'running' or h[2] ~= worker_id then return -1 end
redis.call('HSET', job_key, 'progress', progress)
redis.call('XADD', events_key, 'MAXLEN', '~', events_maxlen, '*', 'kind', 'progress', 'data', progress)
if h[3] == '1' then return 1 end
return 0
