-- Deletes a conversation if it is at the expected version: this store's keys (its outbox
-- hash too, whether or not the outbox is on), Rasa's record of it, and (single servers) its
-- index and pending-set entries, in one step.
-- KEYS[1] events list, KEYS[2] head hash, KEYS[3] outbox hash; single servers: KEYS[4]
-- index ids, KEYS[5] index expiry hints, and at the positions ARGV[7] and ARGV[8] give (0:
-- not given) Rasa's key (with adoption) and the pending set (with the outbox on)
-- ARGV[1] sender id, ARGV[2] expected version or '' for any, ARGV[3] mode: 'own' (only this
-- store's layout counts), 'probe' (Rasa's record not read yet), 'rasa' (Rasa's record was
-- read: ARGV[4] its SHA-1, ARGV[5] its number of events) or 'rest' (cluster: Rasa's record
-- was just deleted at the expected version, so an absent conversation is at it), ARGV[6]
-- Rasa's empty record, ARGV[7..8] key positions (above)
-- Returns {1, 1 if the conversation existed else 0}; {0, current version} deleting nothing;
-- {3} when Rasa's record must be read first; {2} when it changed since it was read.
local function optional_key(position)
  local n = tonumber(position)
  if n == 0 then
    return nil
  end
  return KEYS[n]
end
local rasa_key = optional_key(ARGV[7])
local pending_key = optional_key(ARGV[8])
local expected = ARGV[2]
local mode = ARGV[3]
local own = redis.call('HGET', KEYS[2], 'version')
local current = own or '0'
local existed = own and true or false
if not own and rasa_key and rasa_holds(rasa_key, ARGV[6]) then
  existed = true
  if expected ~= '' then
    if mode ~= 'rasa' then
      return {3}
    end
    if redis.sha1hex(redis.call('GET', rasa_key)) ~= ARGV[4] then
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
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if rasa_key then
  rasa_delete(rasa_key)
end
if KEYS[4] then
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('ZREM', KEYS[5], ARGV[1])
end
if pending_key then
  redis.call('ZREM', pending_key, ARGV[1])
end
if existed then
  return {1, 1}
end
return {1, 0}
