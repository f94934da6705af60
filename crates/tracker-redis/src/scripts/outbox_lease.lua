-- Gives a relay the lease of a conversation (or renews its own), unless another relay's lease
-- is live, and returns the conversation's version and outbox checkpoint. The lease's end is
-- by the server's clock.
-- KEYS[1] head hash, KEYS[2] outbox hash
-- ARGV[1] relay, ARGV[2] lease in milliseconds
-- Returns {1, version, checkpoint}, or {0} while another relay's lease is live.
local now = now_ms()
local state = redis.call('HMGET', KEYS[2], 'published', 'relay', 'until')
if state[2] and state[2] ~= ARGV[1] and (tonumber(state[3]) or 0) > now then
  return {0}
end
local version = redis.call('HGET', KEYS[1], 'version')
redis.call('HSET', KEYS[2], 'relay', ARGV[1], 'until', decimal(now + tonumber(ARGV[2])))
-- The outbox hash expires with the conversation; without one (version 0), with the lease.
local ttl = redis.call('PTTL', KEYS[1])
if ttl >= 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
elseif ttl == -1 then
  redis.call('PERSIST', KEYS[2])
else
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return {1, version or '0', state[1] or '0'}
