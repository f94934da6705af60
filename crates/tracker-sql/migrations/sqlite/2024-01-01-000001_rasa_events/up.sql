-- Rasa's events table. A database Rasa created already has it and keeps it.
CREATE TABLE IF NOT EXISTS events (
    id INTEGER NOT NULL,
    sender_id VARCHAR(255) NOT NULL,
    type_name VARCHAR(255) NOT NULL,
    timestamp FLOAT,
    intent_name VARCHAR(255),
    action_name VARCHAR(255),
    data TEXT,
    PRIMARY KEY (id)
);
