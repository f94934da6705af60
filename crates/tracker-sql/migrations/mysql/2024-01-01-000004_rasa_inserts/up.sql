-- A server without strict mode stored 0 for the `seq` that Rasa's inserts leave out: number
-- again, in Rasa's order (by id), every conversation that has such a row (through negative
-- numbers, so that the unique index holds at every step).
UPDATE events JOIN (
    SELECT id, ROW_NUMBER() OVER (PARTITION BY sender_id ORDER BY id) AS rn FROM events
    WHERE sender_id IN (SELECT sender_id FROM events WHERE seq < 1)
) AS numbered ON events.id = numbered.id
SET events.seq = -numbered.rn;
UPDATE events SET seq = -seq WHERE seq < 0;
-- From now on, a row inserted without `seq` (Rasa's inserts name only its own columns) gets
-- the next position of its conversation. The auto-increment `id` is given after BEFORE
-- triggers, so Rasa's order (`id`) and the store's (`seq`) agree. Under REPEATABLE READ,
-- MariaDB reads the conversation's rows here with shared locks, so an append or versioned
-- delete holding the conversation's lock is waited for and then seen; whatever the server
-- does, two writers that take the same position collide on `ux_events_sender_seq` and one
-- of them fails (InnoDB may also end such a race as a deadlock).
CREATE TRIGGER tracker_events_seq BEFORE INSERT ON events
FOR EACH ROW
BEGIN
    IF NEW.seq IS NULL OR NEW.seq < 1 THEN
        SET NEW.seq = (SELECT COALESCE(MAX(seq), 0) + 1 FROM events
                       WHERE sender_id = NEW.sender_id);
    END IF;
END;
