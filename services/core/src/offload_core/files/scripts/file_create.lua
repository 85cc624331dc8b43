-- Create a file (Files API): its record, the tenant's index, the expiry index, and its bytes in the
-- tenant's byte quota (usage `bytes`), in one step. The content was written before (Redis: the
-- content key, with a short TTL while it was uploaded; or an S3 object the record names).
-- `enforce` = '1' refuses a tenant at its file count or byte quota (uploads); '0' counts without
-- refusing (a batch's output files: the work is done, its result is never thrown away).
-- Every key of the file lives until `ttl` (its expiry plus a grace): the expiry sweep deletes it
-- on time and gives the bytes back; the TTL is the backstop.
-- Returns 'created' | 'too_many' | 'bytes_exceeded'
local file_key, content_key, tenant_files_key, usage_key, expiry_key = unpack(KEYS)
local file_id, fields, size, max_files, max_bytes, enforce, now, expires_at, ttl = unpack(ARGV)

size = tonumber(size)
if enforce == '1' then
  if redis.call('ZCARD', tenant_files_key) >= tonumber(max_files) then return 'too_many' end
  if redis.call('HINCRBY', usage_key, 'bytes', size) > tonumber(max_bytes) then
    redis.call('HINCRBY', usage_key, 'bytes', -size)
    return 'bytes_exceeded'
  end
else
  redis.call('HINCRBY', usage_key, 'bytes', size)
end
redis.call('HSET', file_key, unpack(cjson.decode(fields)))
redis.call('EXPIRE', file_key, ttl)
if redis.call('EXISTS', content_key) == 1 then redis.call('EXPIRE', content_key, ttl) end
redis.call('ZADD', tenant_files_key, now, file_id)
redis.call('ZADD', expiry_key, expires_at, file_id)
return 'created'
