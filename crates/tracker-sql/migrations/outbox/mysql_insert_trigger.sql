-- Every row inserted into `events`, the store's and Rasa's (numbered by the BEFORE trigger
-- `tracker_events_seq`), in the same statement.
CREATE TRIGGER tracker_events_outbox AFTER INSERT ON events
FOR EACH ROW
    INSERT INTO tracker_outbox (sender_id, version, published, pending_since)
    VALUES (NEW.sender_id, NEW.seq, 0, UTC_TIMESTAMP(6))
    ON DUPLICATE KEY UPDATE
        version = GREATEST(version, NEW.seq),
        pending_since = COALESCE(pending_since, UTC_TIMESTAMP(6));
