-- Collect one ended line job into its batch: its output line (succeeded) or error line (failed,
-- dead), or none (`kind` = 'none': cancelled with its batch), and take it off the batch's done and
-- in-flight sets. Idempotent: collecting a job twice writes the same line. A line whose job was
-- requeued by hand and ended again replaces its earlier line. After the batch ended it only
-- forgets the job.
-- Returns 'collected' | 'late'
local batch_key, done_key, inflight_key, output_key, errors_key = unpack(KEYS)
local job_id, line, kind, text = unpack(ARGV)

local status = redis.call('HGET', batch_key, 'status')
redis.call('SREM', done_key, job_id)
if status ~= 'in_progress' and status ~= 'cancelling' and status ~= 'finalizing' then return 'late' end
if kind == 'output' then
  redis.call('HSET', output_key, line, text)
  redis.call('HDEL', errors_key, line)
elseif kind == 'error' then
  redis.call('HSET', errors_key, line, text)
  redis.call('HDEL', output_key, line)
end
redis.call('SREM', inflight_key, job_id)
return 'collected'
