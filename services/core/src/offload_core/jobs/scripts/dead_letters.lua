-- Dead letters: the newest dead jobs of one index (a tenant's, or every tenant's), with their
-- records, in one call. The records' keys are `job_key_prefix` .. id (offload_core.jobs.keys).
-- Returns {id, value of each field, id, value of each field, ...}
local dead_index_key = unpack(KEYS)
local limit, job_key_prefix = unpack(ARGV, 1, 2)

local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
local out = {}
for _, id in ipairs(redis.call('ZREVRANGE', dead_index_key, 0, tonumber(limit) - 1)) do
  out[#out + 1] = id
  for _, v in ipairs(redis.call('HMGET', job_key_prefix .. id, unpack(fields))) do out[#out + 1] = v end
end
return out
