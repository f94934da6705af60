-- Whether Rasa's key `key` holds a conversation: a string other than `empty`, the record Rasa
-- stores before the first event. Keys of another type are not Rasa's records.
local function rasa_holds(key, empty)
  if redis.call('TYPE', key).ok ~= 'string' then
    return false
  end
  if redis.call('STRLEN', key) ~= #empty then
    return true
  end
  return redis.call('GET', key) ~= empty
end

-- Deletes Rasa's key if it holds a string (a key of another type is left alone).
local function rasa_delete(key)
  if redis.call('TYPE', key).ok == 'string' then
    redis.call('DEL', key)
  end
end

