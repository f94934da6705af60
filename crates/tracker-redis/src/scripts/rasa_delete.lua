-- Deletes Rasa's record of a conversation (cluster: it lives in another slot than this
-- store's keys), if it is unchanged since it was read.
-- KEYS[1] Rasa's key
-- ARGV[1] SHA-1 of the record as read, or '' to delete whatever it holds; ARGV[2] Rasa's
-- empty record for the conversation
-- Returns 1 when a record holding events was deleted, 3 when an empty record was, 0 when
-- there was none (a key of another type is left alone), 2 when the record changed since it
-- was read (nothing deleted).
if redis.call('TYPE', KEYS[1]).ok ~= 'string' then
  return 0
end
if ARGV[1] ~= '' and redis.sha1hex(redis.call('GET', KEYS[1])) ~= ARGV[1] then
  return 2
end
local held = rasa_holds(KEYS[1], ARGV[2])
redis.call('DEL', KEYS[1])
if held then
  return 1
end
return 3
