-- For each conversation, whether it exists: in this store's layout, or (with adoption) as a
-- Rasa record holding events (single servers).
-- KEYS[i] the head hash of conversation i, or with adoption KEYS[2i - 1] its head and
-- KEYS[2i] Rasa's key; ARGV[1] 1 or 2 keys per conversation, ARGV[1 + i] with adoption
-- Rasa's empty record for conversation i
-- Returns a list of 1 (exists) and 0.
local stride = tonumber(ARGV[1])
local found = {}
for i = 1, #KEYS / stride do
  local exists = redis.call('EXISTS', KEYS[(i - 1) * stride + 1]) == 1
  if not exists and stride == 2 then
    exists = rasa_holds(KEYS[2 * i], ARGV[1 + i])
  end
  if exists then
    found[i] = 1
  else
    found[i] = 0
  end
end
return found
