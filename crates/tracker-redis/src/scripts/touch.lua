-- Adds sender ids to the index, with an expiry hint when conversations expire, and returns
-- up to 16 ids per id added whose hint has passed: conversations that may have expired, to be
-- checked.
-- KEYS[1] index ids, KEYS[2] index expiry hints
-- ARGV[1] record_exp in milliseconds or '', ARGV[2..] sender ids
local hint = nil
local now = nil
if ARGV[1] ~= '' then
  local time = redis.call('TIME')
  now = time[1] * 1000 + math.floor(time[2] / 1000)
  hint = now + tonumber(ARGV[1])
end
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 0, ARGV[i])
  if hint then
    redis.call('ZADD', KEYS[2], hint, ARGV[i])
  end
end
if not now then
  return {}
end
return redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 16 * (#ARGV - 1))
