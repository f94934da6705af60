-- The outbox's table (`outbox: true`), created by `ensure_schema` after the migrations,
-- under their lock. `{collation}` is replaced by the collation of `events.sender_id`, so that
-- the two tables tell conversations apart alike. Times are UTC (`UTC_TIMESTAMP(6)`, the
-- server's clock, whatever the session's time zone).
CREATE TABLE IF NOT EXISTS tracker_outbox (
    sender_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {collation} NOT NULL,
    -- The conversation's version: its highest `seq`.
    version BIGINT NOT NULL,
    -- The checkpoint: every event up to this `seq` has been published.
    published BIGINT NOT NULL DEFAULT 0,
    -- The lease: which relay may publish the conversation, until when.
    relay VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {collation},
    lease_until DATETIME(6),
    -- Since when the conversation has had events to publish; NULL when it has none
    -- (`version = published`).
    pending_since DATETIME(6),
    PRIMARY KEY (sender_id),
    INDEX ix_tracker_outbox_pending (pending_since, sender_id)
) DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
