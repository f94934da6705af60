-- Rasa's events table, with a binary collation (sender ids that differ only in case or
-- trailing spaces are different conversations), 64-bit timestamps and unbounded data.
CREATE TABLE IF NOT EXISTS events (
    id BIGINT NOT NULL AUTO_INCREMENT,
    sender_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    type_name VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    `timestamp` DOUBLE,
    intent_name VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    action_name VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    data LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    PRIMARY KEY (id)
) DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
