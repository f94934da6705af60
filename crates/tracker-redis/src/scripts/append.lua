-- Appends events to a conversation if it is at the expected version; all or nothing. When
-- the conversation is not in this store's layout yet, the events of Rasa's record of it
-- (read and rendered by the caller) are written first: the conversation is adopted. With
-- the outbox on, the conversation is marked as having events to publish in the same step
-- (single servers) and its outbox hash follows the conversation's expiry.
-- KEYS[1] events list, KEYS[2] head hash, then the optional keys at the positions ARGV[11]
-- to ARGV[14] give (0: not given): the index sorted set (single servers), Rasa's key
-- (single servers, with adoption), the outbox hash and the pending set (single servers),
-- each with the outbox on
-- ARGV[1] expected version, ARGV[2] new version, ARGV[3] seq of the append's last
-- session_started or '', ARGV[4] record_exp in seconds or '', ARGV[5] sender id,
-- ARGV[6] mode: 'own' (Rasa's layout is not consulted), 'probe' (Rasa's record not read
-- yet), 'absent' (Rasa holds no events for the conversation) or 'adopt' (ARGV[8] events of
-- Rasa's record follow), ARGV[7] SHA-1 of Rasa's record as read ('adopt'), ARGV[8] number
-- of events in it, ARGV[9] seq of its last session_started or '', ARGV[10] Rasa's empty
-- record, ARGV[11..14] key positions (above), ARGV[15..] Rasa's events ('adopt') and then
-- the append's events, as JSON text
-- Returns {1, new version, 1 if the conversation was created in this layout else 0, 1 if
-- its outbox checkpoint was at the version before this append else 0 (told only without
-- the pending set: in a cluster)}; {0, current
-- version} writing nothing; {3} when Rasa's record must be read first; {2} when Rasa's
-- record changed since it was read.
local function optional_key(position)
  local n = tonumber(position)
  if n == 0 then
    return nil
  end
  return KEYS[n]
end
local index_key = optional_key(ARGV[11])
local rasa_key = optional_key(ARGV[12])
local outbox_key = optional_key(ARGV[13])
local pending_key = optional_key(ARGV[14])
local own = redis.call('HGET', KEYS[2], 'version')
local mode = ARGV[6]
local rasa_count = 0
if mode == 'adopt' then
  rasa_count = tonumber(ARGV[8])
end
local current = own or '0'
local adopting = false
if not own then
  if mode == 'probe' then
    if not rasa_key or rasa_holds(rasa_key, ARGV[10]) then
      return {3}
    end
  elseif mode == 'absent' then
    if rasa_key and rasa_holds(rasa_key, ARGV[10]) then
      return {2}
    end
  elseif mode == 'adopt' then
    if rasa_key then
      if redis.call('TYPE', rasa_key).ok ~= 'string'
        or redis.sha1hex(redis.call('GET', rasa_key)) ~= ARGV[7] then
        return {2}
      end
    end
    current = ARGV[8]
    adopting = true
  end
end
if current ~= ARGV[1] then
  return {0, current}
end
local stored = redis.call('LLEN', KEYS[1])
if tostring(stored) ~= (own or '0') then
  return redis.error_reply('CORRUPT the head says version ' .. (own or '0') .. ' but the event list holds ' .. stored .. ' events')
end
local last = #ARGV
local first = 15
if not adopting then
  first = first + rasa_count
end
while first <= last do
  local upto = math.min(first + 999, last)
  redis.call('RPUSH', KEYS[1], unpack(ARGV, first, upto))
  first = upto + 1
end
local session = ARGV[3]
if session == '' and adopting then
  session = ARGV[9]
end
if session ~= '' then
  redis.call('HSET', KEYS[2], 'version', ARGV[2], 'session', session)
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
if index_key then
  redis.call('ZADD', index_key, 0, ARGV[5])
end
local settled = 0
if outbox_key then
  if not pending_key then
    -- Cluster: the caller marks the conversation again when it had been published whole.
    local published = tonumber(redis.call('HGET', outbox_key, 'published') or '0')
    if published and published >= tonumber(own or '0') then
      settled = 1
    end
  end
  if ARGV[4] ~= '' then
    redis.call('EXPIRE', outbox_key, ARGV[4])
  else
    redis.call('PERSIST', outbox_key)
  end
end
if pending_key then
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  redis.call('ZADD', pending_key, 'NX', now, ARGV[5])
end
local created = 1
if own then
  created = 0
end
return {1, ARGV[2], created, settled}
