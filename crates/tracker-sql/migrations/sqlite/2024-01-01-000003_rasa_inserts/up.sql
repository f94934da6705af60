-- Rows Rasa inserted after the first migrations have no `seq`: number again, in Rasa's order
-- (by id), every conversation that has one (through negative numbers, so that the unique
-- index holds at every step).
UPDATE events SET seq = -numbered.rn
FROM (
    SELECT id, ROW_NUMBER() OVER (PARTITION BY sender_id ORDER BY id) AS rn FROM events
    WHERE sender_id IN (SELECT sender_id FROM events WHERE seq IS NULL OR seq < 1)
) AS numbered
WHERE events.id = numbered.id;
UPDATE events SET seq = -seq WHERE seq < 0;
-- From now on, a row inserted without `seq` (Rasa's inserts name only its own columns) gets
-- the next position of its conversation at once. SQLite has one writer at a time, so no
-- other row can take that position meanwhile.
CREATE TRIGGER tracker_events_seq AFTER INSERT ON events
FOR EACH ROW WHEN NEW.seq IS NULL
BEGIN
    UPDATE events
    SET seq = (SELECT coalesce(max(seq), 0) + 1 FROM events WHERE sender_id = NEW.sender_id)
    WHERE id = NEW.id;
END;
