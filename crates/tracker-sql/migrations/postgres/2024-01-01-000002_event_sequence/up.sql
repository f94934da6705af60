-- Number each conversation's events 1, 2, 3, ... in Rasa's order (by id).
ALTER TABLE events ADD COLUMN seq BIGINT;
UPDATE events SET seq = numbered.rn
FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY sender_id ORDER BY id) AS rn FROM events) AS numbered
WHERE events.id = numbered.id;
ALTER TABLE events ALTER COLUMN seq SET NOT NULL;
-- Appends are guarded by this constraint: two writers can't store the same position.
ALTER TABLE events ADD CONSTRAINT ux_events_sender_seq UNIQUE (sender_id, seq);
-- Latest-session reads find the last session start without scanning the conversation.
CREATE INDEX ix_events_session_starts ON events (sender_id, seq) WHERE type_name = 'session_started';
-- Listing conversations pages over one row per conversation.
CREATE INDEX ix_events_first ON events (sender_id) WHERE seq = 1;
