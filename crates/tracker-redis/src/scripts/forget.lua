-- Removes sender ids from the index (cluster: the conversations live in other slots).
-- KEYS[1] index ids, KEYS[2] index expiry hints; ARGV sender ids
-- Returns the number of ids removed.
local removed = 0
for i = 1, #ARGV do
  removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
end
return removed
