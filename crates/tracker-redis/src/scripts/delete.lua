-- Deletes a conversation if it is at the expected version: this store's keys, Rasa's record
-- of it, and (single servers) its index entries, in one step.
-- KEYS[1] events list, KEYS[2] head hash; single servers: KEYS[3] index ids, KEYS[4] index
-- expiry hints, and with adoption KEYS[5] Rasa's key
-- ARGV[1] sender id, ARGV[2] expected version or '' for any, ARGV[3] mode: 'own' (only this
-- store's layout counts), 'probe' (Rasa's record not read yet), 'rasa' (Rasa's record was
-- read: ARGV[4] its SHA-1, ARGV[5] its number of events) or 'rest' (cluster: Rasa's record
-- was just deleted at the expected version, so an absent conversation is at it), ARGV[6]
-- Rasa's empty record
-- Returns {1, 1 if the conversation existed else 0}; {0, current version} deleting nothing;
-- {3} when Rasa's record must be read first; {2} when it changed since it was read.
local expected = ARGV[2]
local mode = ARGV[3]
local own = redis.call('HGET', KEYS[2], 'version')
local current = own or '0'
local existed = own and true or false
if not own and KEYS[5] and rasa_holds(KEYS[5], ARGV[6]) then
  existed = true
  if expected ~= '' then
    if mode ~= 'rasa' then
      return {3}
    end
    if redis.sha1hex(redis.call('GET', KEYS[5])) ~= ARGV[4] then
      return {2}
    end
    current = ARGV[5]
  end
end
if not own and mode == 'rest' then
  current = expected
end
if expected ~= '' and current ~= expected then
  return {0, current}
end
redis.call('DEL', KEYS[1], KEYS[2])
if KEYS[5] then
  rasa_delete(KEYS[5])
end
if KEYS[3] then
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
end
if existed then
  return {1, 1}
end
return {1, 0}
