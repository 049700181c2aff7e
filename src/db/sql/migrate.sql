-- Objects the Integration Cache Service owns (SPEC §2.2). Idempotent: safe to run on every deploy,
-- touches no data, and works on an enterprises table with more columns than the service reads.
BEGIN;
SELECT pg_advisory_xact_lock(hashtext('integration_cache_migrate'));

CREATE OR REPLACE FUNCTION integration_cache_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM pg_notify('integration_config_changed',
                          json_build_object('enterprise_number', NEW.number)::text);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('integration_config_changed',
                          json_build_object('enterprise_number', OLD.number)::text);
    ELSIF NEW.number IS DISTINCT FROM OLD.number
       OR NEW.active IS DISTINCT FROM OLD.active
       OR NEW.integrations_config IS DISTINCT FROM OLD.integrations_config
       OR NEW.name2 IS DISTINCT FROM OLD.name2
       OR NEW.secret IS DISTINCT FROM OLD.secret THEN
        PERFORM pg_notify('integration_config_changed',
                          json_build_object('enterprise_number', NEW.number)::text);
        IF NEW.number IS DISTINCT FROM OLD.number THEN
            PERFORM pg_notify('integration_config_changed',
                              json_build_object('enterprise_number', OLD.number)::text);
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER integration_cache_notify
    AFTER INSERT OR DELETE OR UPDATE ON enterprises
    FOR EACH ROW EXECUTE FUNCTION integration_cache_notify();

-- The dispatch outbox (SPEC §6.2): one row per accepted event and target. Workers of any replica
-- claim due rows with FOR UPDATE SKIP LOCKED and hold them with a lease (locked_by/locked_until).
CREATE TABLE IF NOT EXISTS integration_cache_outbox (
    id bigserial PRIMARY KEY,
    event_id text NOT NULL,
    enterprise_number text NOT NULL,
    unique_id text NOT NULL,
    event_type text NOT NULL,
    target text NOT NULL,
    payload jsonb NOT NULL,
    state text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_by text,
    locked_until timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    UNIQUE (event_id, target)
) WITH (fillfactor = 70);
-- Every row is updated twice (claimed, then marked). Free room on its page lets the claim, which
-- touches no indexed column, stay a heap-only update instead of adding six index entries; tables
-- created before this setting get it here (it applies to pages filled from now on).
ALTER TABLE integration_cache_outbox SET (fillfactor = 70);
-- Claims walk a target's pending rows in id order and, per row, look up the earliest pending row
-- of the same call and target: both are index probes on these partial indexes, so a claim costs
-- the same with ten or a million rows waiting. The per-call lookup goes by the row's pending key,
-- "<uniqueId> <target>" while it is pending and NULL once it is finished (a target name has no
-- space, so the key is unambiguous). The key carries the state, so the lookup names no state of
-- its own, and only this index can serve it: when it said state = 'pending', the target's index
-- below could serve it too, and PostgreSQL took that one whenever its statistics were missing or
-- came from an empty or drained outbox, walking every pending row per candidate (from 90 ms to
-- seconds per claim once rows piled up; docs/PERFORMANCE-NOTES.md, sections 7 and 11). Indexes of
-- earlier versions are replaced.
DROP INDEX IF EXISTS integration_cache_outbox_due;
DROP INDEX IF EXISTS integration_cache_outbox_pending_call;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_indexes WHERE tablename = 'integration_cache_outbox'
               AND indexname = 'integration_cache_outbox_created'
               AND indexdef NOT LIKE '%USING brin (created_at)') THEN
        DROP INDEX integration_cache_outbox_created;
    END IF;
END;
$$;
CREATE INDEX IF NOT EXISTS integration_cache_outbox_pending
    ON integration_cache_outbox (target, id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS integration_cache_outbox_pending_key
    ON integration_cache_outbox
    ((CASE WHEN state = 'pending' THEN unique_id || ' ' || target END), id)
    WHERE (CASE WHEN state = 'pending' THEN unique_id || ' ' || target END) IS NOT NULL;
-- A retailcrm hangup asks whether its call's dial was delivered there: only those rows are indexed.
DROP INDEX IF EXISTS integration_cache_outbox_call;
CREATE INDEX IF NOT EXISTS integration_cache_outbox_dial_delivered
    ON integration_cache_outbox (unique_id)
    WHERE target = 'retailcrm' AND event_type = 'dial' AND state = 'delivered';
-- created_at grows with the insertion order, so a block-range index serves the dedup warm-up at
-- start (the newest rows) for a fraction of a B-tree's upkeep on every insert and update. The
-- retention sweep, every minute, has a B-tree of its own over finished rows only: the block-range
-- index cannot rule out ranges not yet summarized by vacuum, and the sweep then read the whole
-- table (200 ms at 390,000 rows) to delete nothing.
CREATE INDEX IF NOT EXISTS integration_cache_outbox_finished
    ON integration_cache_outbox (created_at) WHERE state <> 'pending';
CREATE INDEX IF NOT EXISTS integration_cache_outbox_created
    ON integration_cache_outbox USING brin (created_at);

-- Finished deliveries to uon and ms (SPEC §6.5). Left alone if the platform already has it.
CREATE TABLE IF NOT EXISTS integration_logs (
    id bigserial PRIMARY KEY,
    enterprise_number text NOT NULL,
    integration_type text NOT NULL,
    event_type text NOT NULL,
    request_data jsonb,
    response_data jsonb,
    status text NOT NULL,
    error_message text,
    created_at timestamptz NOT NULL DEFAULT now()
);

COMMIT;
