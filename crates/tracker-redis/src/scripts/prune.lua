-- Removes the index entries of conversations that no longer exist, and moves the expiry
-- hint of those that still do (single servers).
-- KEYS[1] index ids, KEYS[2] index expiry hints, then per sender id ARGV[2 + i]: its head
-- hash, and with adoption (ARGV[2] = 2) Rasa's key
-- ARGV[1] record_exp in milliseconds or '', ARGV[2] keys per sender id (1 or 2), then per
-- sender id: the id, and with adoption Rasa's empty record for it
-- Returns the number of entries removed.
local now = redis.call('TIME')
local hint = nil
if ARGV[1] ~= '' then
  hint = now[1] * 1000 + math.floor(now[2] / 1000) + tonumber(ARGV[1])
end
local stride = tonumber(ARGV[2])
local removed = 0
for i = 1, (#ARGV - 2) / stride do
  local id = ARGV[2 + (i - 1) * stride + 1]
  local exists = redis.call('EXISTS', KEYS[2 + (i - 1) * stride + 1]) == 1
  if not exists and stride == 2 then
    exists = rasa_holds(KEYS[2 + 2 * i], ARGV[2 + 2 * i])
  end
  if not exists then
    removed = removed + redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
  elseif hint then
    redis.call('ZADD', KEYS[2], 'XX', hint, id)
  end
end
return removed
