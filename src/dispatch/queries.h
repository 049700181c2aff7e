/*
 * The outbox SQL (SPEC §6.2), in one place. Batches travel as one jsonb parameter, so a batch of
 * any size is one statement.
 */
#pragma once

/* $1: an array of accepted events in acceptance order, each an object with the event's members
 * and its "targets" (one row per target, the payload stored with each). The same statement takes
 * what an earlier version spooled: an array of rows, each with one "target" (the jsonpath's lax
 * mode reads an event object as an array of one). The three targets are a VALUES list, not a
 * third set-returning function: with three, PostgreSQL estimated a million rows and compiled the
 * statement with JIT on every run (10 ms each). One payload per event instead of one per row cut
 * the statement's time by about a fifth (docs/PERFORMANCE-NOTES.md, section 7). */
#define SQL_OUTBOX_INSERT                                                                          \
    "INSERT INTO integration_cache_outbox "                                                        \
    "(event_id, enterprise_number, unique_id, event_type, target, payload, created_at) "           \
    "SELECT e.v->>'event_id', e.v->>'enterprise_number', e.v->>'unique_id', "                      \
    "e.v->>'event_type', t.target, e.v->'payload', "                                               \
    "to_timestamp((e.v->>'accepted_at')::float8) "                                                 \
    "FROM jsonb_path_query($1::jsonb, '$[*][*]') WITH ORDINALITY AS e(v, n) "                      \
    "CROSS JOIN (VALUES (1, 'retailcrm'), (2, 'uon'), (3, 'ms')) AS t(k, target) "                 \
    "WHERE e.v->'targets' ? t.target OR e.v->>'target' = t.target "                                \
    "ORDER BY e.n, t.k ON CONFLICT (event_id, target) DO NOTHING"

/* $1 target, $2 limit, $3 instance, $4 lease seconds. A row waits while an earlier row of the
 * same call and target is pending: a hangup never overtakes its dial. That check is a scalar
 * subquery on purpose: the planner must run it as one index probe per candidate row (the join it
 * may choose for NOT EXISTS on a table without statistics grows with the square of the backlog:
 * measured 63 s for 19k pending rows, against milliseconds this way). It looks the call up by its
 * pending key, "<uniqueId> <target>" while the row is pending and NULL after (migrate.sql), and
 * names no state: a subquery that said state = 'pending' could also be served by the target's
 * pending index, and with statistics taken while the outbox was drained PostgreSQL chose that,
 * walking every pending row for each candidate (1.8 s per claim at 120,000 rows waiting). The
 * row passes if its id is <= the earliest (so equal, as the row itself is pending): PostgreSQL
 * guesses that a third of the rows pass an inequality, but only 1 in 200 an equality, and with
 * the latter it read and sorted every pending row of the target rather than walk them in order
 * up to the limit (docs/PERFORMANCE-NOTES.md, section 11). */
#define SQL_OUTBOX_CLAIM(transform)                                                                \
    "WITH due AS (SELECT o.id FROM integration_cache_outbox o "                                    \
    "WHERE o.target = $1 AND o.state = 'pending' AND o.next_attempt_at <= now() "                  \
    "AND (o.locked_until IS NULL OR o.locked_until < now()) "                                      \
    "AND o.id <= (SELECT min(p.id) FROM integration_cache_outbox p WHERE "                         \
    "(CASE WHEN p.state = 'pending' THEN p.unique_id || ' ' || p.target END) = "                   \
    "o.unique_id || ' ' || o.target) "                                                             \
    "ORDER BY o.id LIMIT $2::int FOR UPDATE OF o SKIP LOCKED) "                                    \
    "UPDATE integration_cache_outbox o SET locked_by = $3, "                                       \
    "locked_until = now() + make_interval(secs => $4::float8), attempts = o.attempts + 1 "         \
    "FROM due WHERE o.id = due.id RETURNING o.id, o.event_id, o.enterprise_number, o.event_type, " \
    "o.payload::text, extract(epoch FROM o.created_at)::float8, o.attempts, "                      \
    "(o.event_type = 'hangup' AND o.target = 'retailcrm' AND NOT EXISTS (SELECT 1 FROM "           \
    "integration_cache_outbox d WHERE d.unique_id = o.unique_id AND d.target = 'retailcrm' "       \
    "AND d.event_type = 'dial' AND d.state = 'delivered')), " transform

#define SQL_TRANSFORM_NONE "NULL::text"
#define SQL_TRANSFORM_SIP_UNIT                                                                     \
    "(SELECT s.incoming_transform::text FROM sip_unit s WHERE "                                    \
    "s.enterprise_number::text = o.enterprise_number AND "                                         \
    "s.line_name::text = 'sip:' || (o.payload->'raw'->>'Trunk') LIMIT 1)"

/* $1: [{"id", "state", "delay", "error"}]: outcomes of finished or failed attempts. */
#define SQL_OUTBOX_MARK                                                                            \
    "UPDATE integration_cache_outbox o SET state = x.state, locked_by = NULL, "                    \
    "locked_until = NULL, last_error = x.error, "                                                  \
    "next_attempt_at = now() + make_interval(secs => x.delay), "                                   \
    "delivered_at = CASE WHEN x.state = 'delivered' THEN now() END "                               \
    "FROM jsonb_to_recordset($1::jsonb) AS x(id bigint, state text, delay float8, error text) "    \
    "WHERE o.id = x.id"

#define SQL_INTEGRATION_LOGS                                                                       \
    "INSERT INTO integration_logs (enterprise_number, integration_type, event_type, "              \
    "request_data, response_data, status, error_message) "                                         \
    "SELECT x.enterprise_number, x.integration_type, x.event_type, x.request_data, "               \
    "x.response_data, x.status, x.error_message FROM jsonb_to_recordset($1::jsonb) AS "            \
    "x(enterprise_number text, integration_type text, event_type text, request_data jsonb, "       \
    "response_data jsonb, status text, error_message text)"

#define SQL_SIP_UNIT_EXISTS "SELECT to_regclass('sip_unit') IS NOT NULL"
#define SQL_OUTBOX_RELEASE                                                                         \
    "UPDATE integration_cache_outbox SET locked_by = NULL, locked_until = NULL "                   \
    "WHERE locked_by = $1 AND state = 'pending'"
/* $1: ids ({1,2,...}) of rows this instance claimed and did not send, $2 instance: back to any
 * worker at once, their claim's attempt taken back. */
#define SQL_OUTBOX_UNCLAIM                                                                         \
    "UPDATE integration_cache_outbox SET locked_by = NULL, locked_until = NULL, "                  \
    "attempts = attempts - 1 WHERE id = ANY($1::bigint[]) AND locked_by = $2 AND state = "         \
    "'pending'"
#define SQL_OUTBOX_RECENT                                                                          \
    "SELECT DISTINCT unique_id, event_type, extract(epoch FROM created_at)::float8 "               \
    "FROM integration_cache_outbox WHERE created_at > now() - interval '300 seconds'"
#define SQL_OUTBOX_PENDING                                                                         \
    "SELECT target, count(*) FROM integration_cache_outbox WHERE state = 'pending' GROUP BY "      \
    "target"
#define SQL_OUTBOX_RETENTION                                                                       \
    "DELETE FROM integration_cache_outbox WHERE state <> 'pending' "                               \
    "AND created_at < now() - make_interval(secs => $1::float8)"
