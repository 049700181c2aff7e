/*
 * Full refresh (SPEC §5.2): every served enterprise in one query on the `bulk` connection, read in
 * single-row mode so rows are turned into entries as they arrive, into a new table that replaces
 * the current one in one step. A failed refresh discards the new table and keeps the old one in
 * service, and is retried with backoff. Requests for a refresh while one runs share it.
 */
#include <stdlib.h>
#include <string.h>

#include "db/loader_int.h"
#include "db/queries.h"
#include "util/container.h"
#include "util/log.h"
#include "util/rand.h"
#include "util/timeutil.h"

/* Tables do not resize (resizing made destroying a large one take seconds), so the new table is
 * sized from an estimate read just before the rows (or the current table's size, if larger: an
 * estimate may lag behind the table's growth). */
static void ensure_table(struct refresh_state *r, size_t expected)
{
    if (!r->table)
        r->table = cache_table_new(expected + expected / 4);
}

static void count_done(struct pg_query *q, const PGresult *res, const char *error)
{
    struct loader *l = q->ctx;
    if (!error && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
        l->refresh.running) {
        size_t estimate = (size_t)strtoull(PQgetvalue(res, 0, 0), NULL, 10);
        size_t now = cache_count(l->store);
        ensure_table(&l->refresh, estimate > now ? estimate : now);
    }
}

static void refresh_row(struct pg_query *q, const PGresult *row)
{
    struct loader *l = q->ctx;
    struct refresh_state *r = &l->refresh;
    ensure_table(r, cache_count(l->store)); /* the count failed: size like the current table */
    const char *number = PQgetvalue(row, 0, 0);
    const char *why = NULL;
    struct cache_entry *e = NULL;
    if (PQgetvalue(row, 0, 3)[0] == 't') {
        e = entry_build(number, PQgetvalue(row, 0, 4), (size_t)PQgetlength(row, 0, 4),
                        (size_t)l->set->max_config_bytes, &r->clock, r->seq, &r->problems, &why);
        if (!e) {
            r->skipped++;
            log_warn("skipping enterprise %.32s: %s", number, why);
        }
    }
    if (e) {
        entry_set_tokens(e, PQgetvalue(row, 0, 1), PQgetvalue(row, 0, 2));
        cache_table_add(r->table, e);
    } else if (param_valid(PARAM_ENTERPRISE, number, strlen(number))) {
        cache_table_add_token(r->table, PQgetvalue(row, 0, 1), number);
        cache_table_add_token(r->table, PQgetvalue(row, 0, 2), number);
    }
}

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

static void refresh_done(struct pg_query *q, const PGresult *res, const char *error)
{
    struct loader *l = q->ctx;
    struct refresh_state *r = &l->refresh;
    double ms = (time_mono_now() - r->clock.mono_now) * 1000.0;
    r->running = false;
    if (error || PQresultStatus(res) != PGRES_TUPLES_OK) {
        cache_table_free(r->table);
        r->table = NULL;
        cache_carry_stop(l->store);
        r->owed = true;
        STAT_INC(l->stats, refresh_failures);
        STAT_INC(l->stats, database_errors);
        char why[150];
        snprintf(why, sizeof why, "refresh failed: %s", error ? error : "unexpected result");
        log_error("%s; the current cache stays in service; next attempt in %.1fs", why, r->backoff);
        answer(l, 503, why, 0, ms);
        refresh_schedule(l, r->backoff);
        r->backoff =
            r->backoff * 2 > l->set->refresh_interval ? l->set->refresh_interval : r->backoff * 2;
        return;
    }
    ensure_table(r, 0); /* no rows at all */
    size_t n = cache_swap(l->store, r->table, r->seq);
    r->table = NULL;
    r->owed = false;
    r->backoff = 1.0;
    STAT_ADD(l->stats, validation_problems, r->problems + r->skipped);
    STAT_INC(l->stats, refreshes);
    atomic_store(&l->stats->cache_size, n);
    atomic_store(&l->stats->last_refresh, r->clock.real_now);
    atomic_store(&l->stats->last_refresh_mono, time_mono_now());
    atomic_store(&l->stats->last_refresh_ms, ms);
    atomic_store(&l->stats->ready, true);
    log_info("Cache refreshed: %zu entries in %.2fs%s", n, ms / 1000.0,
             r->skipped ? " (rows skipped, see warnings above)" : "");
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
    r->table = NULL; /* sized once the row count is known (count_done) */
    r->seq = ++l->seq;
    cache_carry_from(l->store, r->seq);
    r->skipped = 0;
    r->problems = 0;
    r->clock = entry_clock_at(time_real_now(), time_mono_now(), l->set->ttl);
    r->q = (struct pg_query){.sql = SQL_LOAD_ALL,
                             .single_row = true,
                             .on_row = refresh_row,
                             .on_done = refresh_done,
                             .ctx = l};
    /* `bulk` keeps long refreshes away from misses; while it is still reconnecting, the `query`
     * connection serves rather than failing a refresh the database could answer. */
    struct pg_conn *c = pg_conn_state(l->bulk) == PG_READY ? l->bulk : l->query;
    if (pg_conn_state(c) != PG_READY)
        c = l->bulk;
    r->count_q = (struct pg_query){.sql = SQL_COUNT_ALL, .on_done = count_done, .ctx = l};
    pg_conn_submit(c, &r->count_q);
    pg_conn_submit(c, &r->q);
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

void refresh_abort(struct loader *l)
{
    if (l->refresh.table)
        cache_table_free(l->refresh.table);
    l->refresh.table = NULL;
    cache_carry_stop(l->store);
    answer(l, 503, "refresh failed: shutting down", 0, 0);
}
