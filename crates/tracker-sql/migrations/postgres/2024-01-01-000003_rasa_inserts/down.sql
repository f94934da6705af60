DROP TRIGGER tracker_events_seq ON events;
DROP FUNCTION tracker_events_next_seq();
