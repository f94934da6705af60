-- The outbox (`outbox: true`), created by `ensure_schema` after the migrations, under their
-- lock; creates whatever is missing, in the schema that holds `events`, and changes nothing
-- that exists. Every statement that inserts into `events` — the store's appends and Rasa's
-- own inserts — records, in the same statement, each conversation it added to with its new
-- version (the highest `seq` inserted) and marks it pending; every statement that deletes a
-- conversation's rows deletes its outbox row.
DO $tracker_outbox$
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_schema() AND c.relname = 'tracker_outbox'
    ) THEN
        CREATE TABLE tracker_outbox (
            sender_id VARCHAR(255) NOT NULL PRIMARY KEY,
            -- The conversation's version: its highest `seq`.
            version BIGINT NOT NULL,
            -- The checkpoint: every event up to this `seq` has been published.
            published BIGINT NOT NULL DEFAULT 0,
            -- The lease: which relay may publish the conversation, until when (the server's
            -- clock).
            relay VARCHAR(255),
            lease_until TIMESTAMPTZ,
            -- Since when the conversation has had events to publish; NULL when it has none
            -- (`version = published`).
            pending_since TIMESTAMPTZ
        );
        CREATE INDEX ix_tracker_outbox_pending ON tracker_outbox (pending_since, sender_id)
            WHERE pending_since IS NOT NULL;
    END IF;
    IF NOT EXISTS (
        SELECT FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = current_schema() AND p.proname = 'tracker_events_outbox_appended'
    ) THEN
        CREATE FUNCTION tracker_events_outbox_appended() RETURNS trigger
        LANGUAGE plpgsql
        SET search_path FROM CURRENT
        AS $function$
        BEGIN
            INSERT INTO tracker_outbox AS o (sender_id, version, published, pending_since)
            SELECT sender_id, max(seq), 0, now() FROM tracker_inserted GROUP BY sender_id
            ON CONFLICT (sender_id) DO UPDATE
            SET version = greatest(o.version, excluded.version),
                pending_since = coalesce(o.pending_since, excluded.pending_since);
            RETURN NULL;
        END;
        $function$;
    END IF;
    IF NOT EXISTS (
        SELECT FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = current_schema() AND p.proname = 'tracker_events_outbox_deleted'
    ) THEN
        CREATE FUNCTION tracker_events_outbox_deleted() RETURNS trigger
        LANGUAGE plpgsql
        SET search_path FROM CURRENT
        AS $function$
        BEGIN
            DELETE FROM tracker_outbox
            WHERE sender_id IN (SELECT DISTINCT sender_id FROM tracker_deleted);
            RETURN NULL;
        END;
        $function$;
    END IF;
    -- Once per statement, after it: one upsert per conversation however many rows it
    -- inserted, with the `seq` the numbering trigger gave Rasa's rows.
    IF NOT EXISTS (
        SELECT FROM pg_catalog.pg_trigger
        WHERE tgrelid = to_regclass('events') AND tgname = 'tracker_events_outbox'
    ) THEN
        CREATE TRIGGER tracker_events_outbox AFTER INSERT ON events
            REFERENCING NEW TABLE AS tracker_inserted
            FOR EACH STATEMENT EXECUTE FUNCTION tracker_events_outbox_appended();
    END IF;
    IF NOT EXISTS (
        SELECT FROM pg_catalog.pg_trigger
        WHERE tgrelid = to_regclass('events') AND tgname = 'tracker_events_outbox_delete'
    ) THEN
        CREATE TRIGGER tracker_events_outbox_delete AFTER DELETE ON events
            REFERENCING OLD TABLE AS tracker_deleted
            FOR EACH STATEMENT EXECUTE FUNCTION tracker_events_outbox_deleted();
    END IF;
END
$tracker_outbox$;
