-- Tokens: append streamed output as token events. After the named arguments, ARGV holds the
-- tokens' JSON bodies, one event each.
-- Returns cancel_requested (0/1), or -1 when this worker no longer owns the run.
local job_key, events_key = unpack(KEYS)
local worker_id, events_maxlen = unpack(ARGV, 1, 2)

local h = redis.call('HMGET', job_key, 'state', 'worker', 'cancel_requested')
if h[1] ~= 'running' or h[2] ~= worker_id then return -1 end
for i = 3, #ARGV do
  redis.call('XADD', events_key, 'MAXLEN', '~', events_maxlen, '*', 'kind', 'token', 'data', ARGV[i])
end
if h[3] == '1' then return 1 end
return 0
