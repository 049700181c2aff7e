/*
 * One asynchronous libpq connection driven by the I/O loop: non-blocking connect, a FIFO of
 * queries sent one at a time, notifications, a deadline per query, and reconnection with
 * exponential backoff and jitter after any failure. A connection's state is which of these it is:
 * DOWN (waiting to retry), CONNECTING, READY. All calls on the loop thread.
 *
 * Errors: a query whose connection fails, whose deadline passes, or that is submitted while the
 * connection is DOWN completes with res == NULL and a short reason (never the connection string).
 */
#pragma once
#include <libpq-fe.h>
#include <stdbool.h>

#include "io/loop.h"
#include "settings.h"

enum pg_state { PG_DOWN, PG_CONNECTING, PG_READY };

#define PG_MAX_PARAMS 4
#define PG_MAX_PREPARED 16 /* statements prepared per connection; more run unprepared */

struct pg_query;
/* A row in single-row mode; `row` is freed by the caller after return. */
typedef void (*pg_row_fn)(struct pg_query *q, const PGresult *row);
/* The end of a query: res is the final result (its status tells success) or NULL on failure. The
 * callback owns q from here on (it may free or reuse it). */
typedef void (*pg_done_fn)(struct pg_query *q, const PGresult *res, const char *error);

struct pg_query {
    const char *sql;
    int nparams;
    char *params[PG_MAX_PARAMS]; /* owned by the submitter until done */
    bool single_row;             /* deliver rows one by one through on_row */
    /* Run often: prepared once per connection (when the connection's config allows), then
     * executed by name; `sql` must be a string constant (it is compared by address). Only for
     * statements whose plan cannot depend on table contents (an INSERT of its parameters): after
     * five runs PostgreSQL may keep one generic plan, and a plan that reads a table, chosen while
     * the table was small, would stay in use as it grows (measured: a claim prepared on an empty
     * outbox delivered 285 rows/s instead of 3,000 once 60,000 rows waited). */
    bool prepare;
    pg_row_fn on_row;
    pg_done_fn on_done;
    void *ctx;
    double deadline; /* set by pg_conn_submit; single-row queries: renewed by every row */
    bool sent;       /* set once the query is on its way to the server */
    struct pg_query *next;
};

struct pg_conn;

struct pg_conn_ops {
    /* The connection became READY (after connect or reconnect) or left it. */
    void (*on_state)(struct pg_conn *c, enum pg_state state, void *ctx);
    /* A NOTIFY arrived; channel and payload are valid during the call. */
    void (*on_notify)(struct pg_conn *c, const char *channel, const char *payload, void *ctx);
};

struct pg_conn_config {
    const char *name;     /* for logs: "query", "listener", ... */
    const char *conninfo; /* NULL: libpq's PG* variables */
    double timeout;       /* connect and per-query deadline, seconds */
    bool server_timeout;  /* also make the server cancel a statement running past `timeout`, so
                             a query given up here does not keep running there */
    double backoff_min, backoff_max;
    bool prepare; /* honour pg_query.prepare (--db-prepared) */
};

/* The service's settings for a connection named `name` (--db, --db-timeout, --reconnect-*).
 * `streaming`: it runs long single-row queries (full refresh), timed on progress only. */
struct pg_conn_config pg_conn_config_for(const struct settings *s, const char *name,
                                         bool streaming);

struct pg_conn *pg_conn_new(struct io_loop *loop, const struct pg_conn_config *cfg,
                            const struct pg_conn_ops *ops, void *ctx);
/* Fails whatever is queued and closes; no callback runs after this returns except on_done of
 * queued queries (with an error) during the call. */
void pg_conn_free(struct pg_conn *c);

void pg_conn_start(struct pg_conn *c);
enum pg_state pg_conn_state(const struct pg_conn *c);
/* Queues q; fails it at once (on_done with NULL) when the connection is DOWN. */
void pg_conn_submit(struct pg_conn *c, struct pg_query *q);
/* Drops the connection as if it had failed (e.g. a deaf listener); reconnects with backoff. */
void pg_conn_reset(struct pg_conn *c, const char *why);
/* A libpq notice processor that writes to our log; `name` is a const char* naming the connection.
 * Server notices and errors outside a query (e.g. "terminating connection due to administrator
 * command") then land in the log with timestamp and level, not as bare lines on stderr. */
void pg_notice_to_log(void *name, const char *message);

/* Number of successful reconnections after the first connect. */
unsigned long pg_conn_reconnects(const struct pg_conn *c);
