-- Moves a conversation's outbox checkpoint from ARGV[2] to ARGV[3] if it is at ARGV[2] and
-- the relay holds a live lease, and gives the lease back. When the checkpoint reaches the
-- version, the conversation leaves the pending set: here on a single server; in a cluster
-- (another slot) the caller removes it and checks again.
-- KEYS[1] head hash, KEYS[2] outbox hash, KEYS[3] the pending set (single servers)
-- ARGV[1] relay, ARGV[2] from, ARGV[3] to, ARGV[4] sender id
-- Returns {1, 1 when the checkpoint reached the version else 0}; {0, checkpoint} when the
-- checkpoint is not at `from` or the lease is not the relay's (nothing changed); {2,
-- version} when `to` is not between `from` and the version (nothing changed).
local now = now_ms()
local state = redis.call('HMGET', KEYS[2], 'published', 'relay', 'until')
local published = state[1] or '0'
local from = tonumber(ARGV[2])
if state[2] ~= ARGV[1] or (tonumber(state[3]) or 0) <= now or tonumber(published) ~= from then
  return {0, published}
end
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if not version then
  return redis.error_reply('CORRUPT the head has a version that is not a number')
end
local to = tonumber(ARGV[3])
if to < from or to > version then
  return {2, decimal(version)}
end
if version == 0 then
  -- No conversation: nothing to keep (the hash held only the lease).
  redis.call('DEL', KEYS[2])
else
  redis.call('HSET', KEYS[2], 'published', ARGV[3])
  redis.call('HDEL', KEYS[2], 'relay', 'until')
end
if to == version then
  if KEYS[3] then
    redis.call('ZREM', KEYS[3], ARGV[4])
  end
  return {1, 1}
end
return {1, 0}
