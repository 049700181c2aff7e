/*
 * Point loads, PUT /config writes, invalidation and the expiry sweep (see loader.h). Concurrent
 * misses for one enterprise wait on one pending load; a notification always sends a fresh query,
 * because a load already in flight may have read the row before the change.
 */
#include "db/loader.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db/loader_int.h"
#include "db/queries.h"
#include "util/container.h"
#include "util/log.h"
#include "util/rand.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

struct pending_load {
    struct pg_query q;
    struct loader *l;
    char number[PARAM_MAX_LEN + 1];
    uint64_t seq;
    bool from_notification;
    struct loader_request *waiters;
    struct pending_load *next; /* bucket chain, newest first */
};

/* A PUT in flight: the request plus the query parameters it owns. */
struct put_op {
    struct pg_query q;
    struct loader *l;
    struct loader_request *r;
    uint64_t seq;
};

static unsigned bucket_of(const char *number)
{
    unsigned h = 5381;
    for (; *number; number++)
        h = h * 33 + (unsigned char)*number;
    return h % PENDING_BUCKETS;
}

void loader_finish(struct loader_request *r, int status, const char *error)
{
    r->status = status;
    if (error)
        snprintf(r->error, sizeof r->error, "%s", error);
    r->done(r);
}

void loader_update_connected(struct loader *l)
{
    bool up = pg_conn_state(l->query) == PG_READY && pg_conn_state(l->listener) == PG_READY &&
              l->listening;
    atomic_store(&l->stats->db_connected, up);
}

static struct entry_clock clock_now(const struct loader *l, double ttl)
{
    return entry_clock_at(time_real_now(), time_mono_now(), ttl);
}

/* Builds the entry for a row of SQL_ROW_COLUMNS shape at `row` (number, name2, secret, served,
 * config): a positive entry, or a negative one for a row that is not served or cannot be used
 * (logged). Tokens come along either way. */
static struct cache_entry *entry_from_row(struct loader *l, const PGresult *res, int row,
                                          uint64_t seq)
{
    const char *number = PQgetvalue(res, row, 0);
    struct entry_clock clock = clock_now(l, l->set->ttl);
    struct cache_entry *e = NULL;
    if (PQgetvalue(res, row, 3)[0] == 't') {
        const char *why = NULL;
        unsigned problems = 0;
        e = entry_build(number, PQgetvalue(res, row, 4), (size_t)PQgetlength(res, row, 4),
                        (size_t)l->set->max_config_bytes, &clock, seq, &problems, &why);
        STAT_ADD(l->stats, validation_problems, problems);
        if (!e) {
            STAT_INC(l->stats, validation_problems);
            log_warn("skipping enterprise %.32s: %s", number, why);
        }
    }
    if (!e)
        e = entry_new_negative(number, clock.mono_now, l->set->negative_ttl, seq);
    e->known = true;
    entry_set_tokens(e, PQgetvalue(res, row, 1), PQgetvalue(res, row, 2));
    return e;
}

static void unlink_pending(struct loader *l, struct pending_load *p)
{
    for (struct pending_load **pp = &l->pending[bucket_of(p->number)]; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            return;
        }
    }
}

static void answer_waiters(struct pending_load *p, struct cache_entry *e, int status,
                           const char *error, bool stale)
{
    struct loader_request *w = p->waiters;
    while (w) {
        struct loader_request *next = w->next;
        w->entry = e ? entry_ref(e) : NULL;
        w->stale = stale;
        loader_finish(w, status, error);
        w = next;
    }
}

static void load_done(struct pg_query *q, const PGresult *res, const char *error)
{
    struct pending_load *p = (struct pending_load *)q;
    struct loader *l = p->l;
    unlink_pending(l, p);
    if (error || PQresultStatus(res) != PGRES_TUPLES_OK) {
        STAT_INC(l->stats, database_errors);
        /* A change was announced and could not be read: the query connection is away while the
         * listener is not. A full refresh once it is back reads it (and anything else missed). */
        if (p->from_notification)
            l->refresh_when_query_back = true;
        /* stale-if-error: an expired entry beats no answer while the database is away */
        struct cache_entry *stale = cache_get_ref(l->store, p->number);
        if (stale && !stale->negative) {
            if (p->waiters)
                STAT_INC(l->stats, stale_served);
            answer_waiters(p, stale, 200, NULL, true);
        } else {
            answer_waiters(p, NULL, 503, "database unavailable", false);
        }
        entry_unref(stale);
    } else {
        struct cache_entry *e =
            PQntuples(res) == 0
                ? entry_new_negative(p->number, time_mono_now(), l->set->negative_ttl, p->seq)
                : entry_from_row(l, res, 0, p->seq);
        /* into the cache first: a client answered below may ask again at once */
        cache_put(l->store, entry_ref(e));
        log_debug("loaded: enterprise %s", p->number);
        answer_waiters(p, e, e->negative ? 404 : 200, NULL, false);
        entry_unref(e);
    }
    free(p->q.params[0]);
    free(p);
}

void loader_load(struct loader *l, const char *number, struct loader_request *waiter,
                 bool from_notification)
{
    unsigned b = bucket_of(number);
    for (struct pending_load *p = l->pending[b]; p; p = p->next) {
        if (strcmp(p->number, number) != 0)
            continue;
        /* A miss shares the newest pending load. A notification shares it only while its query
         * has not been sent yet: such a query will read the row after the change anyway. */
        if (from_notification && p->q.sent)
            break;
        if (waiter) {
            waiter->next = p->waiters;
            p->waiters = waiter;
        }
        return;
    }
    if (!from_notification)
        log_info("database miss: enterprise %s", number);
    STAT_INC(l->stats, database_loads);
    struct pending_load *p = xcalloc(1, sizeof *p);
    p->l = l;
    snprintf(p->number, sizeof p->number, "%s", number);
    p->seq = ++l->seq;
    p->from_notification = from_notification;
    if (waiter) {
        waiter->next = NULL;
        p->waiters = waiter;
    }
    p->next = l->pending[b];
    l->pending[b] = p;
    p->q = (struct pg_query){.sql = SQL_LOAD_ONE, .nparams = 1, .on_done = load_done};
    p->q.params[0] = xstrdup(number);
    pg_conn_submit(l->query, &p->q);
}

static void put_done(struct pg_query *q, const PGresult *res, const char *error)
{
    struct put_op *op = (struct put_op *)q;
    struct loader *l = op->l;
    struct loader_request *r = op->r;
    const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (error && sqlstate && strncmp(sqlstate, "22", 2) == 0) {
        loader_finish(r, 400, "body must be a JSON object"); /* PostgreSQL refused the JSON */
    } else if (error || PQresultStatus(res) != PGRES_TUPLES_OK) {
        STAT_INC(l->stats, database_errors);
        loader_finish(r, 503, "database unavailable");
    } else if (PQntuples(res) == 0) {
        loader_finish(r, 404, "Enterprise not found");
    } else {
        cache_put(
            l->store,
            entry_from_row(l, res, 0,
                           op->seq)); /* the cache reflects the write before the answer goes out */
        log_info("config updated: enterprise %s, integration %s", r->number, r->type);
        loader_finish(r, 200, NULL);
    }
    for (int i = 0; i < 3; i++)
        free(op->q.params[i]);
    free(op);
}

static void put_config(struct loader *l, struct loader_request *r)
{
    struct put_op *op = xcalloc(1, sizeof *op);
    op->l = l;
    op->r = r;
    op->seq = ++l->seq;
    op->q = (struct pg_query){.sql = SQL_PUT_CONFIG, .nparams = 3, .on_done = put_done};
    op->q.params[0] = xstrdup(r->number);
    op->q.params[1] = xstrdup(r->type);
    op->q.params[2] = xstrdup(r->body);
    pg_conn_submit(l->query, &op->q);
}

static void run_request(struct io_loop *loop, struct io_task *task)
{
    struct loader_request *r = (struct loader_request *)task;
    struct loader *l = r->owner;
    switch (r->op) {
    case LOADER_LOAD:
        loader_load(l, r->number, r, false);
        break;
    case LOADER_REFRESH:
        refresh_start(l, r);
        break;
    case LOADER_PUT_CONFIG:
        put_config(l, r);
        break;
    case LOADER_INVALIDATE:
        cache_remove(l->store, r->number);
        loader_changed(l, r->number);
        log_info("cache invalidated: enterprise %s", r->number);
        loader_finish(r, 200, NULL);
        break;
    }
}

void loader_on_change(struct loader *l, void (*fn)(void *ctx, const char *number), void *ctx)
{
    l->on_change = fn;
    l->on_change_ctx = ctx;
}

void loader_changed(struct loader *l, const char *number)
{
    if (l->on_change)
        l->on_change(l->on_change_ctx, number);
}

void loader_submit(struct loader *l, struct loader_request *r)
{
    r->owner = l;
    r->entry = NULL;
    r->error[0] = '\0';
    r->task.fn = run_request;
    io_post(l->loop, &r->task);
}

static void on_sweep(struct io_loop *loop, struct io_timer *t)
{
    struct loader *l = container_of(t, struct loader, sweep_timer);
    /* While the database is away, expired entries are all there is to serve: keep them. */
    if (atomic_load(&l->stats->db_connected)) {
        size_t n = cache_sweep(l->store, time_mono_now());
        STAT_ADD(l->stats, expired_removed, n);
        if (n)
            log_debug("expiry sweep removed %zu entries", n);
    }
    io_timer_arm(loop, t, l->set->cleanup_interval);
}

static void query_state(struct pg_conn *c, enum pg_state state, void *ctx)
{
    struct loader *l = ctx;
    loader_update_connected(l);
    if (state == PG_READY && l->refresh_when_query_back) {
        l->refresh_when_query_back = false;
        log_info("query connection back: refreshing for a change it could not read meanwhile");
        refresh_start(l, NULL);
    }
}

static const struct pg_conn_ops query_ops = {.on_state = query_state};

struct loader *loader_new(struct io_loop *loop, const struct settings *set,
                          struct cache_store *store, struct stats *stats)
{
    struct loader *l = xcalloc(1, sizeof *l);
    l->loop = loop;
    l->set = set;
    l->store = store;
    l->stats = stats;
    struct pg_conn_config cfg = pg_conn_config_for(set, "query", false);
    l->query = pg_conn_new(loop, &cfg, &query_ops, l);
    cfg = pg_conn_config_for(set, "listener", false);
    l->listener = pg_conn_new(loop, &cfg, &listener_ops, l);
    l->sweep_timer.fn = on_sweep;
    listener_init(l);
    snprintf(l->instance_id, sizeof l->instance_id, "ic-%ld-%08lx", (long)getpid(),
             (unsigned long)(rand_unit() * 4294967295.0));
    return l;
}

void loader_start(struct loader *l)
{
    pg_conn_start(l->query);
    l->worker = refresh_worker_start(l->set, l->loop, refresh_bulk_ready, l);
    pg_conn_start(l->listener); /* once listening, it starts the first full refresh */
    io_timer_arm(l->loop, &l->sweep_timer, l->set->cleanup_interval);
}

void loader_free(struct loader *l)
{
    if (!l)
        return;
    /* freeing a connection fails its queries, which answers every waiting request */
    pg_conn_free(l->listener);
    pg_conn_free(l->query);
    refresh_abort(l);
    io_timer_disarm(l->loop, &l->sweep_timer);
    io_timer_disarm(l->loop, &l->refresh_timer);
    io_timer_disarm(l->loop, &l->heartbeat_timer);
    io_timer_disarm(l->loop, &l->heartbeat_deadline);
    free(l);
}
