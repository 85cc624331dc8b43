-- Cancel a batch for its tenant: a running batch becomes `cancelling` (the coordinator cancels its
-- unfinished lines and ends it as `cancelled`, with the output so far). Asking again is harmless.
-- Returns {'cancelling'} | {'refused', status} | {'missing'}
local batch_key = unpack(KEYS)
local tenant, now = unpack(ARGV)

local h = redis.call('HMGET', batch_key, 'tenant', 'status')
if h[1] ~= tenant then return {'missing'} end
if h[2] == 'cancelling' then return {'cancelling'} end
if h[2] ~= 'in_progress' then return {'refused', h[2]} end
redis.call('HSET', batch_key, 'status', 'cancelling', 'cancelling_at', now, 'ending', 'cancelled')
return {'cancelling'}
