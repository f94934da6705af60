-- Whether Rasa's record of a conversation holds events (cluster: one key per call).
-- KEYS[1] Rasa's key; ARGV[1] Rasa's empty record for the conversation
-- Returns 1 or 0.
if rasa_holds(KEYS[1], ARGV[1]) then
  return 1
end
return 0
