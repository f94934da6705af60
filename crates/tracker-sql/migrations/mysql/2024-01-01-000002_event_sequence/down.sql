ALTER TABLE events
    DROP INDEX ix_events_first,
    DROP INDEX ix_events_session_starts,
    DROP INDEX ux_events_sender_seq,
    DROP COLUMN seq;
