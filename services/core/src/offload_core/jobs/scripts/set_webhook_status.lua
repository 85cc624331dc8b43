-- Set webhook status: record a webhook delivery's progress in its job's record, but only while
-- the record exists (a status must not bring back the key of a job that expired meanwhile).
-- Returns 1 if written, 0 if the record is gone.
local job_key = unpack(KEYS)
local status_json = unpack(ARGV)

if redis.call('EXISTS', job_key) == 0 then return 0 end
redis.call('HSET', job_key, 'webhook', status_json)
return 1
