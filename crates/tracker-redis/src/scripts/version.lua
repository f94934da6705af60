-- A conversation's version in this store's layout or, when it is not there, Rasa's record.
-- KEYS[1] head hash, KEYS[2] Rasa's key
-- Returns {'own', version}, {'rasa', Rasa's record}, or {'none'}.
local version = redis.call('HGET', KEYS[1], 'version')
if version then
  return {'own', version}
end
if redis.call('TYPE', KEYS[2]).ok == 'string' then
  return {'rasa', redis.call('GET', KEYS[2])}
end
return {'none'}
