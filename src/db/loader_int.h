/*
 * Private to src/db/: the loader's state, shared by loader.c (point loads, writes, sweep),
 * refresh.c (full refresh) and listener.c (LISTEN/NOTIFY and heartbeat). Everything here is
 * touched on the I/O thread only.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "db/loader.h"
#include "db/pgconn.h"
#include "db/refresh_worker.h"

#define PENDING_BUCKETS 256

struct pending_load; /* loader.c */

struct refresh_state {
    bool running; /* `job` is out, on the refresh worker or the query connection */
    bool owed;    /* the last attempt failed: run again once `bulk` is back */
    bool again;   /* asked for while running, by someone who needs a newer snapshot */
    struct refresh_job job;
    struct loader_request *waiters;
    double backoff;
};

struct loader {
    struct io_loop *loop;
    const struct settings *set;
    struct cache_store *store;
    struct stats *stats;
    struct pg_conn *query, *listener;
    struct refresh_worker *worker; /* owns the `bulk` connection */
    uint64_t seq;                  /* bumped for every load sent; entries remember theirs */
    struct pending_load *pending[PENDING_BUCKETS];
    struct refresh_state refresh;
    struct io_timer refresh_timer, sweep_timer, heartbeat_timer, heartbeat_deadline;
    bool heartbeat_outstanding, heartbeat_busy, listening;
    bool refresh_when_query_back; /* a notification's reload failed for want of a connection */
    struct pg_query heartbeat_q, listen_q[2];
    char instance_id[48];
    void (*on_change)(void *ctx, const char *number);
    void *on_change_ctx;
};

/* Tells loader_on_change's listener that `number` changed. */
void loader_changed(struct loader *l, const char *number);

/* loader.c */
void loader_load(struct loader *l, const char *number, struct loader_request *waiter,
                 bool from_notification);
void loader_update_connected(struct loader *l);
void loader_finish(struct loader_request *r, int status, const char *error);

/* refresh.c */
void refresh_start(struct loader *l, struct loader_request *waiter);
void refresh_schedule(struct loader *l, double delay);
/* Stops the refresh worker and answers whoever still waits for a refresh. */
void refresh_abort(struct loader *l);
/* The refresh worker's bulk connection became ready (a loader* as ctx). */
void refresh_bulk_ready(void *ctx);

/* listener.c */
void listener_init(struct loader *l);
extern const struct pg_conn_ops listener_ops;
