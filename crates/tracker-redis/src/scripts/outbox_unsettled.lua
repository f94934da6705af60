-- Whether a conversation has events past its outbox checkpoint (cluster: checked after taking
-- it off the pending set, which lives in another slot, to put it back if an append came in).
-- KEYS[1] head hash, KEYS[2] outbox hash
-- Returns 1 (events to publish, or a version that is not a number) or 0.
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
local published = tonumber(redis.call('HGET', KEYS[2], 'published') or '0') or 0
if version and version <= published then
  return 0
end
return 1
