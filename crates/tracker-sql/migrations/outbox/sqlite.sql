-- The outbox (`outbox: true`), created by `ensure_schema` after the migrations, in their
-- transaction; creates whatever is missing and changes nothing that exists. Times are
-- milliseconds since the Unix epoch by SQLite's clock (`julianday('now')`, fixed for the
-- length of a statement).
CREATE TABLE IF NOT EXISTS tracker_outbox (
    sender_id VARCHAR(255) NOT NULL PRIMARY KEY,
    -- The conversation's version: its highest `seq`.
    version BIGINT NOT NULL,
    -- The checkpoint: every event up to this `seq` has been published.
    published BIGINT NOT NULL DEFAULT 0,
    -- The lease: which relay may publish the conversation, until when.
    relay VARCHAR(255),
    lease_until BIGINT,
    -- Since when the conversation has had events to publish; NULL when it has none
    -- (`version = published`).
    pending_since BIGINT
);
CREATE INDEX IF NOT EXISTS ix_tracker_outbox_pending ON tracker_outbox (pending_since, sender_id)
    WHERE pending_since IS NOT NULL;
-- Every row inserted with its `seq` (the store's appends).
CREATE TRIGGER IF NOT EXISTS tracker_events_outbox AFTER INSERT ON events
FOR EACH ROW WHEN NEW.seq IS NOT NULL
BEGIN
    INSERT INTO tracker_outbox (sender_id, version, published, pending_since)
    VALUES (NEW.sender_id, NEW.seq, 0,
            CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER))
    ON CONFLICT (sender_id) DO UPDATE
    SET version = max(version, excluded.version),
        pending_since = coalesce(pending_since, excluded.pending_since);
END;
-- A row inserted without `seq` (Rasa's), once `tracker_events_seq` has numbered it.
CREATE TRIGGER IF NOT EXISTS tracker_events_outbox_numbered AFTER UPDATE OF seq ON events
FOR EACH ROW WHEN OLD.seq IS NULL AND NEW.seq IS NOT NULL
BEGIN
    INSERT INTO tracker_outbox (sender_id, version, published, pending_since)
    VALUES (NEW.sender_id, NEW.seq, 0,
            CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER))
    ON CONFLICT (sender_id) DO UPDATE
    SET version = max(version, excluded.version),
        pending_since = coalesce(pending_since, excluded.pending_since);
END;
CREATE TRIGGER IF NOT EXISTS tracker_events_outbox_delete AFTER DELETE ON events
FOR EACH ROW
BEGIN
    DELETE FROM tracker_outbox WHERE sender_id = OLD.sender_id;
END;
