-- Appends events to a conversation if it is at the expected version; all or nothing.
-- KEYS[1] events list, KEYS[2] head hash, KEYS[3] index sorted set (standalone servers only)
-- ARGV[1] expected version, ARGV[2] new version, ARGV[3] seq of the append's last
-- session_started or '', ARGV[4] record_exp in seconds or '', ARGV[5] sender id,
-- ARGV[6..] the events' JSON text
-- Returns {1, new version} or, writing nothing, {0, current version}.
local current = redis.call('HGET', KEYS[2], 'version') or '0'
if current ~= ARGV[1] then
  return {0, current}
end
local stored = redis.call('LLEN', KEYS[1])
if tostring(stored) ~= current then
  return redis.error_reply('CORRUPT the head says version ' .. current .. ' but the event list holds ' .. stored .. ' events')
end
local last = #ARGV
local first = 6
while first <= last do
  local upto = math.min(first + 999, last)
  redis.call('RPUSH', KEYS[1], unpack(ARGV, first, upto))
  first = upto + 1
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[2], 'version', ARGV[2], 'session', ARGV[3])
else
  redis.call('HSET', KEYS[2], 'version', ARGV[2])
end
if ARGV[4] ~= '' then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
else
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
end
if KEYS[3] then
  redis.call('ZADD', KEYS[3], 0, ARGV[5])
end
return {1, ARGV[2]}
