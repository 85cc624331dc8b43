-- Heartbeat: renew a run's lease (its score in the running set), and tell the worker whether
-- the job's cancel was requested. A lease that lapsed while nobody took the job over (a long
-- pause) is simply renewed: the run still belongs to this worker.
-- Returns {owned 0/1, cancel_requested 0/1}
local job_key, running_key = unpack(KEYS)
local worker_id, now, lease_seconds = unpack(ARGV)

local h = redis.call('HMGET', job_key, 'state', 'worker', 'cancel_requested', 'id')
if h[1] ~= 'running' or h[2] ~= worker_id then return {0, 0} end
redis.call('ZADD', running_key, tonumber(now) + tonumber(lease_seconds), h[4])
if h[3] == '1' then return {1, 1} end
return {1, 0}
