-- Rasa's events table. A database Rasa created already has it (with a 32-bit id) and keeps it.
CREATE TABLE IF NOT EXISTS events (
    id BIGSERIAL NOT NULL PRIMARY KEY,
    sender_id VARCHAR(255) NOT NULL,
    type_name VARCHAR(255) NOT NULL,
    timestamp DOUBLE PRECISION,
    intent_name VARCHAR(255),
    action_name VARCHAR(255),
    data TEXT
);
