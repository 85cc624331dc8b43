-- End a batch: its final status and time, its counts and files, out of the work list and the
-- tenant's active count, the input file's pin released, the working sets deleted (the output
-- and error lines are files now), the record kept `retention` seconds, and the webhook in the
-- outbox when the batch asked for one (delivery id `<batch id>/<status>`).
-- Returns 'ended' | 'already'
local batch_key, batches_key, usage_key, file_key, done_key, inflight_key, output_key, errors_key, webhooks_key = unpack(KEYS)
local batch_id, status, now, output_file_id, error_file_id, completed, failed, retention = unpack(ARGV)

local h = redis.call('HMGET', batch_key, 'status', 'callback_url')
if h[1] ~= 'in_progress' and h[1] ~= 'cancelling' and h[1] ~= 'finalizing' then return 'already' end
redis.call('HSET', batch_key, 'status', status, status .. '_at', now, 'output_file_id', output_file_id,
           'error_file_id', error_file_id, 'completed', completed, 'failed', failed)
redis.call('SREM', batches_key, batch_id)
if redis.call('HINCRBY', usage_key, 'batches', -1) < 0 then redis.call('HSET', usage_key, 'batches', 0) end
if redis.call('EXISTS', file_key) == 1 and redis.call('HINCRBY', file_key, 'pins', -1) < 0 then
  redis.call('HSET', file_key, 'pins', 0)
end
redis.call('DEL', done_key, inflight_key, output_key, errors_key)
redis.call('EXPIRE', batch_key, retention)
if h[2] and h[2] ~= '' then redis.call('ZADD', webhooks_key, now, batch_id .. '/' .. status) end
return 'ended'
