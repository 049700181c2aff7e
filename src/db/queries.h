/*
 * The SQL the service runs, in one place. Only served enterprises are read (SPEC §2.1:
 * active AND integrations_config IS NOT NULL); configs travel as text so they can be cached byte
 * for byte.
 */
#pragma once

/* Rows of both loads: number, name2, secret, served, config text (NULL unless served). Rows that
 * are not served still bring their tokens, so dispatch can tell "not served" from "unknown". */
#define SQL_ROW_COLUMNS                                                                            \
    "SELECT number, name2, secret, served, CASE WHEN served THEN integrations_config::text END "   \
    "FROM (SELECT *, (active IS TRUE AND integrations_config IS NOT NULL) AS served "              \
    "FROM enterprises) e "

#define SQL_LOAD_ONE SQL_ROW_COLUMNS "WHERE number = $1"
#define SQL_LOAD_ALL SQL_ROW_COLUMNS
/* A size hint for the next table, read just before SQL_LOAD_ALL on the same connection: the
 * planner's row estimate, or a count when the table was never analyzed (counting 100,000 rows
 * took 17 ms, on the refresh's critical path). */
#define SQL_COUNT_ALL                                                                              \
    "SELECT CASE WHEN c.reltuples > 0 THEN c.reltuples::bigint "                                   \
    "ELSE (SELECT count(*) FROM enterprises) END "                                                 \
    "FROM pg_class c WHERE c.oid = 'enterprises'::regclass"

/* One statement: other keys untouched, NULL treated as {}. Returns whether the row is served. */
#define SQL_PUT_CONFIG                                                                             \
    "UPDATE enterprises SET integrations_config = "                                                \
    "COALESCE(integrations_config, '{}'::jsonb) || jsonb_build_object($2::text, $3::jsonb) "       \
    "WHERE number = $1 RETURNING number, name2, secret, (active IS TRUE), "                        \
    "integrations_config::text"

#define SQL_HEARTBEAT "SELECT pg_notify('integration_cache_heartbeat', $1)"
#define SQL_LISTEN_CONFIG "LISTEN integration_config_changed"
#define SQL_LISTEN_HEARTBEAT "LISTEN integration_cache_heartbeat"
#define CHANNEL_CONFIG "integration_config_changed"
#define CHANNEL_HEARTBEAT "integration_cache_heartbeat"
