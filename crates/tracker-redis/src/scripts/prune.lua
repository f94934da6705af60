-- Removes the index entries of conversations that no longer exist, and moves the expiry
-- hint of those that still do (standalone servers).
-- KEYS[1] index ids, KEYS[2] index expiry hints, KEYS[2 + i] head hash of ARGV[1 + i]
-- ARGV[1] record_exp in milliseconds or '', ARGV[2..] sender ids
-- Returns the number of entries removed.
local now = redis.call('TIME')
local hint = nil
if ARGV[1] ~= '' then
  hint = now[1] * 1000 + math.floor(now[2] / 1000) + tonumber(ARGV[1])
end
local removed = 0
for i = 2, #ARGV do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
  elseif hint then
    redis.call('ZADD', KEYS[2], 'XX', hint, ARGV[i])
  end
end
return removed
