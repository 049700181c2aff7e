/*
 * The refresh worker and its jobs (see refresh_worker.h). A job's callbacks touch only the job,
 * the settings and the store's size, so the same job runs on the worker's bulk connection or, as a
 * fallback, on a connection of the I/O loop.
 */
#include "db/refresh_worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "db/queries.h"
#include "util/container.h"
#include "util/log.h"
#include "util/params.h"
#include "util/xalloc.h"

struct refresh_worker {
    pthread_t thread;
    struct io_loop *loop; /* the worker's own */
    struct pg_conn *bulk; /* on `loop` */
    atomic_bool lost;     /* bulk was ready and is not now */
    /* bulk became ready: told to the home loop, one notice queued at a time */
    struct io_loop *home;
    struct io_task ready_task;
    atomic_bool ready_queued;
    void (*on_ready)(void *ctx);
    void *ctx;
};

/* Tables do not resize (resizing made destroying a large one take seconds), so the new table is
 * sized from an estimate read just before the rows (or the current table's size, if larger: an
 * estimate may lag behind the table's growth). */
static void ensure_table(struct refresh_job *job, size_t expected)
{
    if (!job->table)
        job->table = cache_table_new(expected + expected / 4);
}

static void count_done(struct pg_query *q, const PGresult *res, const char *error)
{
    struct refresh_job *job = q->ctx;
    if (!error && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        size_t estimate = (size_t)strtoull(PQgetvalue(res, 0, 0), NULL, 10);
        size_t now = cache_count(job->store);
        ensure_table(job, estimate > now ? estimate : now);
    }
}

static void job_row(struct pg_query *q, const PGresult *row)
{
    struct refresh_job *job = q->ctx;
    ensure_table(job, cache_count(job->store)); /* the count failed: size like the current table */
    const char *number = PQgetvalue(row, 0, 0);
    const char *why = NULL;
    struct cache_entry *e = NULL;
    if (PQgetvalue(row, 0, 3)[0] == 't') {
        e = entry_build(number, PQgetvalue(row, 0, 4), (size_t)PQgetlength(row, 0, 4),
                        (size_t)job->set->max_config_bytes, &job->clock, job->seq, &job->problems,
                        &why);
        if (!e) {
            job->skipped++;
            log_warn("skipping enterprise %.32s: %s", number, why);
        }
    }
    if (e) {
        entry_set_tokens(e, PQgetvalue(row, 0, 1), PQgetvalue(row, 0, 2));
        cache_table_add(job->table, e);
    } else if (param_valid(PARAM_ENTERPRISE, number, strlen(number))) {
        cache_table_add_token(job->table, PQgetvalue(row, 0, 1), number);
        cache_table_add_token(job->table, PQgetvalue(row, 0, 2), number);
    }
}

static void job_home(struct io_loop *loop, struct io_task *task)
{
    (void)loop;
    struct refresh_job *job = container_of(task, struct refresh_job, task);
    job->done(job);
}

static void job_done(struct pg_query *q, const PGresult *res, const char *error)
{
    struct refresh_job *job = q->ctx;
    if (error || PQresultStatus(res) != PGRES_TUPLES_OK) {
        cache_table_free(job->table);
        job->table = NULL;
        snprintf(job->error, sizeof job->error, "%s", error ? error : "unexpected result");
    } else {
        ensure_table(job, 0); /* no rows at all */
    }
    job->task = (struct io_task){.fn = job_home};
    io_post(job->home, &job->task);
}

void refresh_job_run_on(struct pg_conn *c, struct refresh_job *job)
{
    job->table = NULL; /* sized once the row count is known (count_done) */
    job->error[0] = '\0';
    job->skipped = 0;
    job->problems = 0;
    job->count_q = (struct pg_query){.sql = SQL_COUNT_ALL, .on_done = count_done, .ctx = job};
    job->q = (struct pg_query){.sql = SQL_LOAD_ALL,
                               .single_row = true,
                               .on_row = job_row,
                               .on_done = job_done,
                               .ctx = job};
    pg_conn_submit(c, &job->count_q);
    pg_conn_submit(c, &job->q);
}

/* On the worker: a job handed over by the I/O thread. */
static void job_arrived(struct io_loop *loop, struct io_task *task)
{
    (void)loop;
    struct refresh_job *job = container_of(task, struct refresh_job, task);
    refresh_job_run_on(job->worker->bulk, job);
}

void refresh_worker_run(struct refresh_worker *w, struct refresh_job *job)
{
    job->task = (struct io_task){.fn = job_arrived};
    job->worker = w;
    io_post(w->loop, &job->task);
}

bool refresh_worker_lost(struct refresh_worker *w)
{
    return atomic_load(&w->lost);
}

static void ready_at_home(struct io_loop *loop, struct io_task *task)
{
    (void)loop;
    struct refresh_worker *w = container_of(task, struct refresh_worker, ready_task);
    atomic_store(&w->ready_queued, false);
    w->on_ready(w->ctx);
}

static void bulk_state(struct pg_conn *c, enum pg_state state, void *ctx)
{
    (void)c;
    struct refresh_worker *w = ctx;
    atomic_store(&w->lost, state != PG_READY);
    if (state == PG_READY && !atomic_exchange(&w->ready_queued, true))
        io_post(w->home, &w->ready_task);
}

static const struct pg_conn_ops bulk_ops = {.on_state = bulk_state};

static void *worker_main(void *arg)
{
    struct refresh_worker *w = arg;
    pthread_setname_np(pthread_self(), "ic-refresh");
    /* this thread only: on Linux, nice applies per thread */
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), REFRESH_NICE) != 0)
        log_warn("refresh thread: cannot lower its priority: %s", strerror(errno));
    pg_conn_start(w->bulk);
    io_loop_run(w->loop);
    io_loop_run_pending(w->loop); /* a job handed over just before the stop */
    pg_conn_free(w->bulk);        /* fails what it still runs: those jobs end */
    return NULL;
}

struct refresh_worker *refresh_worker_start(const struct settings *set, struct io_loop *home,
                                            void (*on_ready)(void *ctx), void *ctx)
{
    struct refresh_worker *w = xcalloc(1, sizeof *w);
    w->home = home;
    w->on_ready = on_ready;
    w->ctx = ctx;
    w->ready_task.fn = ready_at_home;
    w->loop = io_loop_new();
    struct pg_conn_config cfg = pg_conn_config_for(set, "bulk", true);
    w->bulk = pg_conn_new(w->loop, &cfg, &bulk_ops, w);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        fprintf(stderr, "FATAL cannot start the refresh thread\n");
        abort();
    }
    return w;
}

void refresh_worker_stop(struct refresh_worker *w)
{
    if (!w)
        return;
    io_loop_stop(w->loop);
    pthread_join(w->thread, NULL);
    io_loop_free(w->loop);
    free(w);
}
