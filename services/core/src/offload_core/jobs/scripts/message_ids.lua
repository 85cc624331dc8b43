-- Message ids, for the lost-message sweep (offload_core.maintenance.sweeper): one chunk of a
-- queue list or of kombu's unacknowledged-message hash, answered with the job ids its messages
-- carry (the Celery task id is the job id; it is the first "id" key of a message's JSON, whose
-- body is base64). Chunks keep each call short, so Redis never blocks on a long backlog.
-- kind: 'list' | 'hash'; position: the start index (list) or HSCAN cursor (hash).
-- Returns {next position ('0' at the end), id, ...} ('' for an entry without an id)
local source_key = unpack(KEYS)
local kind, position, count = unpack(ARGV)

local out = {}
local entries
if kind == 'list' then
  local start, n = tonumber(position), tonumber(count)
  entries = redis.call('LRANGE', source_key, start, start + n - 1)
  if #entries < n then out[1] = '0' else out[1] = tostring(start + #entries) end
else
  local reply = redis.call('HSCAN', source_key, position, 'COUNT', count)
  out[1] = reply[1]
  entries = {}
  for i = 2, #reply[2], 2 do entries[#entries + 1] = reply[2][i] end
end
for _, m in ipairs(entries) do out[#out + 1] = string.match(m, '"id": ?"([^"]+)"') or '' end
return out
