-- Create a batch whose input file was validated: its record, the tenant's index and active
-- count, the coordinator's work list, and a pin on the input file (it cannot be deleted while the
-- batch reads it, and lives at least as long as the batch may run).
-- Returns 'created' | 'file_missing' | 'too_many'
local batch_key, tenant_batches_key, usage_key, batches_key, file_key, content_key, expiry_key = unpack(KEYS)
local batch_id, fields, max_active, now, tenant, file_id, file_expires_at, file_ttl = unpack(ARGV)

local f = redis.call('HMGET', file_key, 'tenant', 'expires_at')
if f[1] ~= tenant then return 'file_missing' end
if redis.call('HINCRBY', usage_key, 'batches', 1) > tonumber(max_active) then
  redis.call('HINCRBY', usage_key, 'batches', -1)
  return 'too_many'
end
redis.call('HSET', batch_key, unpack(cjson.decode(fields)))
redis.call('ZADD', tenant_batches_key, now, batch_id)
redis.call('SADD', batches_key, batch_id)
redis.call('HINCRBY', file_key, 'pins', 1)
redis.call('HSET', file_key, 'pinned_by', batch_id)
if tonumber(f[2]) < tonumber(file_expires_at) then
  redis.call('HSET', file_key, 'expires_at', file_expires_at)
  redis.call('ZADD', expiry_key, file_expires_at, file_id)
  redis.call('EXPIRE', file_key, file_ttl)
  if redis.call('EXISTS', content_key) == 1 then redis.call('EXPIRE', content_key, file_ttl) end
end
return 'created'
