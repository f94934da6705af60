-- For each conversation of the pending set, what a relay should do with it: 1 publish (events
-- past its checkpoint, or a version that is not a number, and no live lease), 0 leave it (a
-- relay's lease on it is live, by the server's clock), 2 nothing (published whole: no
-- events past its checkpoint). Those published whole are taken off the pending set here
-- when it is given (single servers); in a cluster the caller does it.
-- KEYS[1] the pending set when ARGV[1] is '1' (single servers), then per conversation its
-- head hash and its outbox hash (in a cluster one conversation per call)
-- ARGV[1] '1' when KEYS[1] is the pending set else '0', ARGV[1 + i] the sender id of
-- conversation i
-- Returns a list of 1, 0 and 2.
local now = now_ms()
local pending = nil
local first = 1
if ARGV[1] == '1' then
  pending = KEYS[1]
  first = 2
end
local status = {}
for i = 1, #ARGV - 1 do
  local head = KEYS[first + 2 * (i - 1)]
  local outbox = KEYS[first + 2 * (i - 1) + 1]
  local state = redis.call('HMGET', outbox, 'published', 'until')
  local version = tonumber(redis.call('HGET', head, 'version') or '0')
  local published = tonumber(state[1] or '0') or 0
  if (tonumber(state[2]) or 0) > now then
    status[i] = 0
  elseif version and version <= published then
    status[i] = 2
    if pending then
      redis.call('ZREM', pending, ARGV[1 + i])
    end
  else
    status[i] = 1
  end
end
return status
