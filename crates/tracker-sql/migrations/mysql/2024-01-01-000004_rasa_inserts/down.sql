DROP TRIGGER tracker_events_seq;
