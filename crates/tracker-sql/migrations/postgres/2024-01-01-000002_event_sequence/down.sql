DROP INDEX ix_events_first;
DROP INDEX ix_events_session_starts;
ALTER TABLE events DROP CONSTRAINT ux_events_sender_seq;
ALTER TABLE events DROP COLUMN seq;
