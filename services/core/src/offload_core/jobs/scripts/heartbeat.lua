-- Heartbeat: renew a run's lease, and tell the worker whether the job's cancel was requested.
-- Returns {owned 0/1, cancel_requested 0/1}
local lease_key, job_key = unpack(KEYS)
local worker_id, lease_ms = unpack(ARGV)

local owned = 0
if redis.call('GET', lease_key) == worker_id then
  redis.call('PEXPIRE', lease_key, lease_ms); owned = 1
elseif redis.call('HGET', job_key, 'worker') == worker_id and redis.call('HGET', job_key, 'state') == 'running' then
  -- The lease lapsed (a long pause) but nobody took the job over: take the lease back.
  redis.call('SET', lease_key, worker_id, 'PX', lease_ms); owned = 1
end
local cancel = 0
if redis.call('HGET', job_key, 'cancel_requested') == '1' then cancel = 1 end
return {owned, cancel}
