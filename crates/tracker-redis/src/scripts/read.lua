-- Reads a conversation's version and the events of a scope, atomically, when they are at
-- most ARGV[2]; else only where they start, for the caller to read them with plain commands
-- (Lua copies every event it returns, which for many events costs more than a round trip).
-- When the conversation is not in this store's layout, Rasa's record of it instead.
-- KEYS[1] events list, KEYS[2] head hash, KEYS[3] Rasa's key (single servers, with adoption)
-- ARGV[1] 'all' or 'latest' (from the event before the last session_started), ARGV[2] most
-- events to return
-- Returns {version, first seq, events}; {'from', first seq} when the scope holds more events
-- than ARGV[2]; {'rasa', Rasa's record} when only Rasa holds the conversation; nil when
-- neither does.
local head = redis.call('HMGET', KEYS[2], 'version', 'session')
if not head[1] then
  if redis.call('EXISTS', KEYS[2]) == 1 then
    return redis.error_reply('CORRUPT the head has no version')
  end
  if KEYS[3] and redis.call('TYPE', KEYS[3]).ok == 'string' then
    return {'rasa', redis.call('GET', KEYS[3])}
  end
  return false
end
local version = tonumber(head[1])
if not version then
  return redis.error_reply('CORRUPT the head has a version that is not a number')
end
local first = 1
if ARGV[1] == 'latest' and head[2] then
  local session = tonumber(head[2])
  if not session then
    return redis.error_reply('CORRUPT the head has a session start that is not a number')
  end
  if session > 1 then
    first = session - 1
  end
end
if version - first + 1 > tonumber(ARGV[2]) then
  return {'from', first}
end
return {head[1], first, redis.call('LRANGE', KEYS[1], first - 1, -1)}
