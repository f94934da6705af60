-- Marks conversations as having events to publish (cluster: the pending set lives in another
-- slot than the conversations): adds them to the pending set, keeping the score of those
-- already there, so the set stays ordered by when each was first marked.
-- KEYS[1] the pending set; ARGV sender ids
-- Returns the number of ids newly added.
local now = now_ms()
local added = 0
for i = 1, #ARGV do
  added = added + redis.call('ZADD', KEYS[1], 'NX', now, ARGV[i])
end
return added
