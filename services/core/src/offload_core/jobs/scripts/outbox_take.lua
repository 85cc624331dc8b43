-- Outbox take: the webhook deliveries due by `now`, oldest first, each leased to the caller
-- until `lease_until` (its score moves there), so two dispatchers never send one at once and a
-- dispatcher that dies leaves its deliveries to be taken again when the lease ends.
-- Returns {delivery id, ...}
local outbox_key = unpack(KEYS)
local now, lease_until, limit = unpack(ARGV)

local due = redis.call('ZRANGEBYSCORE', outbox_key, '-inf', now, 'LIMIT', 0, tonumber(limit))
for _, member in ipairs(due) do redis.call('ZADD', outbox_key, 'XX', lease_until, member) end
return due
