/*
 * Full refresh (SPEC §5.2), on the I/O thread's side: when to run one, who waits for it, and what
 * to do with its outcome. The refresh job itself (every served enterprise in one query on the
 * `bulk` connection, read in single-row mode and turned into entries as rows arrive) runs on the
 * refresh worker's thread (refresh_worker.h) and builds a new table that replaces the current one
 * in one step. A failed refresh discards the new table and keeps the old one in service, and is
 * retried with backoff. Requests for a refresh while one runs share it.
 */
#include <stdio.h>

#include "db/loader_int.h"
#include "util/container.h"
#include "util/log.h"
#include "util/rand.h"
#include "util/timeutil.h"

static void answer(struct loader *l, int status, const char *error, size_t entries, double ms)
{
    struct loader_request *w = l->refresh.waiters;
    l->refresh.waiters = NULL;
    while (w) {
        struct loader_request *next = w->next;
        w->entries = entries;
        w->duration_ms = ms;
        loader_finish(w, status, error);
        w = next;
    }
}

static void refresh_done(struct refresh_job *job)
{
    struct loader *l = container_of(job, struct loader, refresh.job);
    struct refresh_state *r = &l->refresh;
    double ms = (time_mono_now() - job->clock.mono_now) * 1000.0;
    r->running = false;
    if (!job->table) {
        cache_carry_stop(l->store);
        r->owed = true;
        STAT_INC(l->stats, refresh_failures);
        STAT_INC(l->stats, database_errors);
        char why[180];
        snprintf(why, sizeof why, "refresh failed: %s", job->error);
        log_error("%s; the current cache stays in service; next attempt in %.1fs", why, r->backoff);
        answer(l, 503, why, 0, ms);
        refresh_schedule(l, r->backoff);
        r->backoff =
            r->backoff * 2 > l->set->refresh_interval ? l->set->refresh_interval : r->backoff * 2;
        return;
    }
    size_t n = cache_swap(l->store, job->table, job->seq);
    job->table = NULL;
    r->owed = false;
    r->backoff = 1.0;
    STAT_ADD(l->stats, validation_problems, job->problems + job->skipped);
    STAT_INC(l->stats, refreshes);
    atomic_store(&l->stats->cache_size, n);
    atomic_store(&l->stats->last_refresh, job->clock.real_now);
    atomic_store(&l->stats->last_refresh_mono, time_mono_now());
    atomic_store(&l->stats->last_refresh_ms, ms);
    atomic_store(&l->stats->ready, true);
    log_info("Cache refreshed: %zu entries in %.2fs%s", n, ms / 1000.0,
             job->skipped ? " (rows skipped, see warnings above)" : "");
    if (r->again) {
        refresh_start(l, NULL); /* waiters that came late get the next one */
        return;
    }
    answer(l, 200, NULL, n, ms);
    refresh_schedule(l, l->set->refresh_interval + rand_unit() * l->set->refresh_jitter);
}

void refresh_start(struct loader *l, struct loader_request *waiter)
{
    struct refresh_state *r = &l->refresh;
    if (waiter) {
        waiter->next = r->waiters;
        r->waiters = waiter;
    }
    if (r->running) {
        /* The running query may have read its snapshot before the caller's reason to refresh
         * (e.g. a listener that just came back): run once more afterwards. Waiters share it. */
        r->again = true;
        return;
    }
    if (r->backoff == 0)
        r->backoff = 1.0;
    r->running = true;
    r->again = false;
    struct refresh_job *job = &r->job;
    job->home = l->loop;
    job->set = l->set;
    job->store = l->store;
    job->seq = ++l->seq;
    job->clock = entry_clock_at(time_real_now(), time_mono_now(), l->set->ttl);
    job->done = refresh_done;
    cache_carry_from(l->store, job->seq);
    /* `bulk` keeps long refreshes off the I/O thread and away from misses; while it is
     * reconnecting, the `query` connection serves rather than failing a refresh the database
     * could answer. */
    if (refresh_worker_lost(l->worker) && pg_conn_state(l->query) == PG_READY)
        refresh_job_run_on(l->query, job);
    else
        refresh_worker_run(l->worker, job);
}

static void on_refresh_timer(struct io_loop *loop, struct io_timer *t)
{
    struct loader *l = container_of(t, struct loader, refresh_timer);
    refresh_start(l, NULL);
}

void refresh_schedule(struct loader *l, double delay)
{
    l->refresh_timer.fn = on_refresh_timer;
    io_timer_arm(l->loop, &l->refresh_timer, delay);
}

void refresh_bulk_ready(void *ctx)
{
    struct loader *l = ctx;
    if (l->refresh.owed && !l->refresh.running)
        refresh_start(l, NULL); /* a refresh that failed because `bulk` was down */
}

void refresh_abort(struct loader *l)
{
    refresh_worker_stop(l->worker);
    l->worker = NULL;
    struct refresh_state *r = &l->refresh;
    if (r->running) { /* it has ended, but its outcome will not be taken in: the loop stopped */
        cache_table_free(r->job.table);
        r->job.table = NULL;
        r->running = false;
    }
    cache_carry_stop(l->store);
    answer(l, 503, "refresh failed: shutting down", 0, 0);
}
