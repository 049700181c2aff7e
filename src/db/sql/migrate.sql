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
-- the same with ten or a million rows waiting. The per-call index is keyed by one expression,
-- "<uniqueId> <target>" (a target name has no space, so the key is unambiguous), which the claim
-- compares as a whole: no other index can serve that lookup and this one cannot serve the scan by
-- target. With separate columns PostgreSQL mixed the two up whenever the statistics were missing
-- or came from an empty outbox, and a claim took from 90 ms to seconds once rows piled up
-- (docs/PERFORMANCE-NOTES.md, section 7). Indexes of earlier versions whose definition differs
-- are replaced.
DROP INDEX IF EXISTS integration_cache_outbox_due;
DO $$
DECLARE
    want CONSTANT text[][] := ARRAY[
        ['integration_cache_outbox_pending_call',
         '%((((unique_id || '' ''::text) || target)), id) WHERE (state = ''pending''::text)'],
        ['integration_cache_outbox_created', '%USING brin (created_at)']];
BEGIN
    FOR i IN 1 .. array_length(want, 1) LOOP
        IF EXISTS (SELECT 1 FROM pg_indexes WHERE tablename = 'integration_cache_outbox'
                   AND indexname = want[i][1] AND indexdef NOT LIKE want[i][2]) THEN
            EXECUTE format('DROP INDEX %I', want[i][1]);
        END IF;
    END LOOP;
END;
$$;
CREATE INDEX IF NOT EXISTS integration_cache_outbox_pending
    ON integration_cache_outbox (target, id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS integration_cache_outbox_pending_call
    ON integration_cache_outbox ((unique_id || ' ' || target), id) WHERE state = 'pending';
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
