-- A conversation's deleted rows take its outbox row with them, in the same statement.
CREATE TRIGGER tracker_events_outbox_delete AFTER DELETE ON events
FOR EACH ROW
    DELETE FROM tracker_outbox WHERE sender_id = OLD.sender_id;
