/*
 * Keeps the cache in step with PostgreSQL: one-enterprise loads for misses and notifications
 * (concurrent loads of one enterprise share a query), the full refresh at start-up, on a timer and
 * on request, writes from PUT /config, LISTEN/NOTIFY with a self-heartbeat, and the expiry sweep.
 * It owns three libpq connections: `query` (point loads and writes, in order) and `listener` on
 * the I/O loop, and `bulk` (full refreshes, so a long refresh never delays a miss) on the refresh
 * worker's thread, which builds the new table there at a lower CPU priority.
 *
 * Other threads talk to it only through loader_submit: they fill a loader_request, and its `done`
 * callback runs later on the I/O thread with the outcome filled in.
 */
#pragma once
#include <stddef.h>

#include "cache/entry.h"
#include "cache/store.h"
#include "io/loop.h"
#include "settings.h"
#include "stats.h"

enum loader_op {
    LOADER_LOAD,       /* number -> entry (or negative), from the database */
    LOADER_REFRESH,    /* full refresh now */
    LOADER_PUT_CONFIG, /* number, type, body -> write, then reload */
    LOADER_INVALIDATE, /* number -> dropped from the cache */
};

struct loader_request {
    struct io_task task; /* used by loader_submit */
    enum loader_op op;
    char number[PARAM_MAX_LEN + 1];
    char type[PARAM_MAX_LEN + 1];
    const char *body; /* LOADER_PUT_CONFIG: a JSON object's text, owned by the submitter */
    /* Runs on the I/O thread once the outcome below is filled in. */
    void (*done)(struct loader_request *r);
    /* outcome */
    int status;                  /* 200, 404 or 503 */
    struct cache_entry *entry;   /* LOADER_LOAD: a reference the receiver drops; NULL or negative */
    char error[160];             /* for 503: a reason safe to show */
    bool stale;                  /* LOADER_LOAD: the database failed; entry is an expired copy */
    size_t entries;              /* LOADER_REFRESH */
    double duration_ms;          /* LOADER_REFRESH */
    struct loader_request *next; /* internal: waiters sharing one query */
    struct loader *owner;        /* internal: set by loader_submit */
};

struct loader;

struct loader *loader_new(struct io_loop *loop, const struct settings *settings,
                          struct cache_store *store, struct stats *stats);
/* Connects and starts the first full refresh (on the I/O thread, before io_loop_run). */
void loader_start(struct loader *l);
/* On the I/O thread, after the loop stopped: completes every waiting request with 503. */
void loader_free(struct loader *l);

/* Any thread. */
void loader_submit(struct loader *l, struct loader_request *r);

/* Called on the I/O thread whenever an enterprise changed (notification) or was invalidated, so
 * that what is derived from it elsewhere (customer look-ups) can be dropped too. */
void loader_on_change(struct loader *l, void (*fn)(void *ctx, const char *number), void *ctx);
