-- Delete a file: asked by its tenant (`tenant` given), or by the expiry sweep (`tenant` = '': only
-- once it is due). A file that batches still read (`pins` > 0; `pinned_by` names the latest) is
-- deleted for neither.
-- Its bytes leave the tenant's byte quota in the same step.
-- Returns {'deleted', content_ref} | {'in_use', batch id} | {'not_due'} | {'missing'}
local file_key, content_key, tenant_files_key, usage_key, expiry_key = unpack(KEYS)
local file_id, tenant, now = unpack(ARGV)

local h = redis.call('HMGET', file_key, 'tenant', 'bytes', 'pinned_by', 'expires_at', 'content_ref', 'pins')
if not h[1] then
  redis.call('ZREM', expiry_key, file_id)
  return {'missing'}
end
if tenant ~= '' and h[1] ~= tenant then return {'missing'} end
if tonumber(h[6] or '0') > 0 then return {'in_use', h[3] or ''} end
if tenant == '' and tonumber(h[4]) > tonumber(now) then return {'not_due'} end
redis.call('DEL', file_key, content_key)
redis.call('ZREM', tenant_files_key, file_id)
redis.call('ZREM', expiry_key, file_id)
if redis.call('HINCRBY', usage_key, 'bytes', -tonumber(h[2] or '0')) < 0 then redis.call('HSET', usage_key, 'bytes', 0) end
return {'deleted', h[5] or ''}
