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

COMMIT;
