/*
 * Private to src/db/: where a full refresh's rows become a new table. A refresh job runs the
 * refresh's two statements (the row estimate, then every served enterprise in single-row mode)
 * and builds the table as rows arrive. It runs on the refresh worker: a thread of its own,
 * `ic-refresh`, that owns the `bulk` connection on a loop of its own, at a lower CPU priority
 * (nice REFRESH_NICE) than the rest of the service. So while a refresh of 100,000 enterprises
 * keeps a core busy, the HTTP threads and the I/O thread (misses, notifications, dispatch) are
 * scheduled first whenever they wake, and the I/O thread is free for them meanwhile
 * (docs/PERFORMANCE-NOTES.md, section 15).
 *
 * The I/O thread hands a job over and gets it back, done, as a task on its own loop.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/store.h"
#include "db/pgconn.h"
#include "io/loop.h"
#include "settings.h"

/* The worker's niceness. Nice 5, 10 and 19 measured alike (section 15); a thread cannot take a
 * lower value back without privilege, which is why the refresh has a thread of its own. */
#define REFRESH_NICE 10

struct refresh_job;
struct refresh_worker;
typedef void (*refresh_job_fn)(struct refresh_job *job);

struct refresh_job {
    struct io_task task; /* to the worker, then back to the I/O loop */
    /* input, set by the I/O thread */
    struct io_loop *home;
    const struct settings *set;
    struct cache_store *store; /* read only: the current size, to size the new table */
    uint64_t seq;
    struct entry_clock clock;
    refresh_job_fn done; /* runs on the I/O thread with the outcome below */
    /* outcome */
    struct cache_table *table; /* the new table (not yet visible); NULL when failed */
    char error[150];           /* why it failed */
    size_t skipped;            /* rows that could not be used (logged) */
    unsigned problems;         /* validation problems within the rows used */
    /* internal */
    struct refresh_worker *worker;
    struct pg_query count_q, q;
};

/* Starts the thread; `on_ready` runs on `home`'s thread each time the bulk connection becomes
 * ready (after connecting or reconnecting). */
struct refresh_worker *refresh_worker_start(const struct settings *set, struct io_loop *home,
                                            void (*on_ready)(void *ctx), void *ctx);
/* Any thread: the bulk connection was lost and is not back yet (a job now would fail at once).
 * While it connects for the first time, a job waits for it. */
bool refresh_worker_lost(struct refresh_worker *w);
/* I/O thread: runs job on the worker's bulk connection. */
void refresh_worker_run(struct refresh_worker *w, struct refresh_job *job);
/* I/O thread: runs job on `c`, a connection of the I/O loop itself (while bulk is lost). */
void refresh_job_run_on(struct pg_conn *c, struct refresh_job *job);
/* I/O thread, once nothing will hand it jobs: stops the worker and waits for it. A job it still
 * had has ended (failed) by then, but its `done` will not run: the caller cleans up. */
void refresh_worker_stop(struct refresh_worker *w);
