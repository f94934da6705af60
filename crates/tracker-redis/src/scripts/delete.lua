-- Deletes a conversation and its index entries in one step (standalone servers).
-- KEYS[1] events list, KEYS[2] head hash, KEYS[3] index ids, KEYS[4] index expiry hints
-- ARGV[1] sender id
-- Returns 1 if the conversation existed, else 0.
local existed = redis.call('EXISTS', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return existed
