-- A table Rasa created has FLOAT timestamps (single precision), TEXT data (64 KB) and the
-- server's collation: widen them, then number each conversation's events in Rasa's order.
ALTER TABLE events
    ADD COLUMN seq BIGINT NULL,
    MODIFY sender_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    MODIFY type_name VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    MODIFY `timestamp` DOUBLE,
    MODIFY intent_name VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    MODIFY action_name VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    MODIFY data LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
UPDATE events JOIN (
    SELECT id, ROW_NUMBER() OVER (PARTITION BY sender_id ORDER BY id) AS rn FROM events
) AS numbered ON events.id = numbered.id
SET events.seq = numbered.rn;
ALTER TABLE events
    MODIFY seq BIGINT NOT NULL,
    ADD CONSTRAINT ux_events_sender_seq UNIQUE (sender_id, seq),
    ADD INDEX ix_events_session_starts (sender_id, type_name, seq),
    ADD INDEX ix_events_first (seq, sender_id);
