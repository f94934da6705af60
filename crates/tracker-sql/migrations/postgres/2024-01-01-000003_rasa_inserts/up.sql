-- Rasa's SQLTrackerStore inserts name only its own columns. Such a row (`seq` NULL) gets the
-- next position of its conversation, taken under the conversation's lock as appends and
-- versioned deletes take it (the row at its current version, FOR UPDATE), and then a new `id`
-- from the column's sequence, so that Rasa's order (`id`) and the store's (`seq`) agree.
CREATE FUNCTION tracker_events_next_seq() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    latest BIGINT;
    locked BIGINT;
    id_sequence TEXT;
BEGIN
    LOOP
        SELECT seq INTO latest FROM events
            WHERE sender_id = NEW.sender_id ORDER BY seq DESC LIMIT 1;
        EXIT WHEN latest IS NULL;
        SELECT seq INTO locked FROM events
            WHERE sender_id = NEW.sender_id AND seq = latest FOR UPDATE;
        -- Once its last row is locked, nobody else adds to the conversation.
        EXIT WHEN locked IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM events WHERE sender_id = NEW.sender_id AND seq > latest);
    END LOOP;
    NEW.seq := coalesce(latest, 0) + 1;
    id_sequence := pg_get_serial_sequence(format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME), 'id');
    IF id_sequence IS NOT NULL THEN
        NEW.id := nextval(id_sequence);
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER tracker_events_seq BEFORE INSERT ON events
    FOR EACH ROW WHEN (NEW.seq IS NULL) EXECUTE FUNCTION tracker_events_next_seq();
