/*
 * Asynchronous libpq connection on the I/O loop (see pgconn.h). libpq is driven only through its
 * non-blocking calls (PQconnectPoll, PQsendQueryParams, PQconsumeInput, PQflush, PQisBusy), so the
 * loop never waits on the database. One query is in flight at a time; results are handed over in
 * order, which is what keeps writes and reloads of the same enterprise in sequence.
 *
 * Statements marked `prepare` are parsed and planned once per connection (PQsendPrepare, one more
 * round trip the first time) and then executed by name: the outbox INSERT, several hundred times a
 * second, spent a fifth of its PostgreSQL time in the planner (docs/PERFORMANCE-NOTES.md, 7).
 */
#include "db/pgconn.h"

#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/rand.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

struct pg_conn {
    struct io_loop *loop;
    struct pg_conn_config cfg;
    char *conninfo;
    const struct pg_conn_ops *ops;
    void *ctx;
    enum pg_state state;
    PGconn *pg;
    struct io_watch watch;
    bool watching;
    struct io_timer retry;    /* DOWN -> CONNECTING */
    struct io_timer deadline; /* connect or query deadline */
    struct io_timer more;     /* rows left from the last read: handed over on the next turn */
    bool held;                /* ... and until then the socket is not read */
    double backoff;
    double connect_deadline;
    bool ever_ready, logged_down, closing;
    unsigned long reconnects;
    struct pg_query *current;
    bool preparing; /* `current` waits for its statement's Prepare to finish */
    const char *prepared[PG_MAX_PREPARED]; /* sql of the statements prepared as "ic<i>" */
    int nprepared;
    PGresult *last; /* the newest result of `current` */
    struct pg_query *head, *tail;
};

static void on_socket(struct io_loop *loop, int fd, uint32_t events, void *ctx);
static void pump(struct pg_conn *c);

/* One turn of the I/O thread hands over a connection's rows for at most this long; rows still in
 * libpq's buffer wait for the next turn, after the other sockets and timers. A full refresh of
 * 100,000 rows otherwise held the thread for up to 35 ms per read, and every miss, notification
 * and dispatch write waiting behind it (docs/PERFORMANCE-NOTES.md, section 15). */
#define PG_ROWS_TURN 0.001

#define CONN_OF(timer, field) ((struct pg_conn *)((char *)(timer)-offsetof(struct pg_conn, field)))

static void set_watch(struct pg_conn *c, uint32_t events)
{
    int fd = c->pg ? PQsocket(c->pg) : -1;
    if (c->watching && (fd != c->watch.fd || fd < 0)) {
        io_watch_del(c->loop, &c->watch);
        c->watching = false;
    }
    if (fd < 0)
        return;
    if (!c->watching) {
        c->watch = (struct io_watch){.fd = fd, .events = events, .fn = on_socket, .ctx = c};
        c->watching = io_watch_add(c->loop, &c->watch) == 0;
    } else {
        io_watch_modify(c->loop, &c->watch, events);
    }
}

static void fail_query(struct pg_query *q, const char *why)
{
    q->on_done(q, NULL, why);
}

static void arm_deadline(struct pg_conn *c)
{
    double due = 0;
    if (c->state == PG_CONNECTING)
        due = c->connect_deadline;
    if (c->current && (due == 0 || c->current->deadline < due))
        due = c->current->deadline;
    for (struct pg_query *q = c->head; q; q = q->next)
        if (due == 0 || q->deadline < due)
            due = q->deadline;
    if (due == 0)
        io_timer_disarm(c->loop, &c->deadline);
    else
        io_timer_arm(c->loop, &c->deadline, due - time_mono_now());
}

/* Closes the connection, fails every query, and schedules a reconnect. */
static void conn_fail(struct pg_conn *c, const char *why)
{
    bool was_ready = c->state == PG_READY;
    if (!c->closing && (!c->logged_down || was_ready))
        log_warn("database connection '%s' lost or unavailable: %s; retrying in %.1fs", c->cfg.name,
                 why, c->backoff);
    c->logged_down = true;
    if (c->watching)
        io_watch_del(c->loop, &c->watch);
    c->watching = false;
    PQfinish(c->pg);
    c->pg = NULL;
    c->state = PG_DOWN;
    c->preparing = false;
    c->nprepared = 0; /* a new session knows none of them */
    io_timer_disarm(c->loop, &c->deadline);
    io_timer_disarm(c->loop, &c->more);
    c->held = false;
    double delay = c->backoff * (0.5 + 0.5 * rand_unit());
    io_timer_arm(c->loop, &c->retry, delay);
    c->backoff = c->backoff * 2 > c->cfg.backoff_max ? c->cfg.backoff_max : c->backoff * 2;

    struct pg_query *q = c->current, *queued = c->head;
    c->current = NULL;
    c->head = c->tail = NULL;
    PQclear(c->last);
    c->last = NULL;
    if (q)
        fail_query(q, why);
    while (queued) {
        struct pg_query *next = queued->next;
        fail_query(queued, why);
        queued = next;
    }
    if (was_ready && c->ops->on_state)
        c->ops->on_state(c, PG_DOWN, c->ctx);
}

/* Server notices and errors outside a query (e.g. "terminating connection due to administrator
 * command") go to our log instead of libpq's default, a bare line on stderr. */
void pg_notice_to_log(void *name, const char *message)
{
    char line[512];
    snprintf(line, sizeof line, "%s", message);
    line[strcspn(line, "\n")] = '\0';
    log_info("database notice on '%s': %s", (const char *)name, line);
}

static void start_connect(struct pg_conn *c)
{
    /* our options first: what the operator's connection string says wins over them. No JIT: our
     * statements are short, and once the outbox held 100,000 rows the claim's estimated cost
     * passed jit_above_cost and every claim spent 18-38 ms compiling to run for 0.8 ms
     * (docs/PERFORMANCE-NOTES.md, section 7). */
    char options[96] = "-c jit=off";
    if (c->cfg.server_timeout)
        snprintf(options, sizeof options, "-c jit=off -c statement_timeout=%.0f",
                 c->cfg.timeout * 1000 + 500);
    const char *keys[] = {"application_name", "options", "dbname", NULL};
    const char *vals[] = {"integration_cache", options, c->conninfo, NULL};
    if (!c->conninfo)
        keys[2] = NULL;
    c->pg = PQconnectStartParams(keys, vals, 1);
    c->state = PG_CONNECTING;
    c->connect_deadline = time_mono_now() + c->cfg.timeout;
    if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
        conn_fail(c, "connection could not be started");
        return;
    }
    PQsetnonblocking(c->pg, 1);
    PQsetNoticeProcessor(c->pg, pg_notice_to_log, (void *)c->cfg.name);
    set_watch(c, EPOLLOUT);
    arm_deadline(c);
}

static void on_retry(struct io_loop *loop, struct io_timer *t)
{
    start_connect(CONN_OF(t, retry));
}

static void became_ready(struct pg_conn *c)
{
    c->state = PG_READY;
    c->backoff = c->cfg.backoff_min;
    if (c->ever_ready) {
        c->reconnects++;
        log_info("database connection '%s' re-established", c->cfg.name);
    } else {
        log_info("database connection '%s' established (server %s, database %s)", c->cfg.name,
                 PQhost(c->pg), PQdb(c->pg));
    }
    c->ever_ready = true;
    c->logged_down = false;
    set_watch(c, EPOLLIN);
    arm_deadline(c);
    if (c->ops->on_state)
        c->ops->on_state(c, PG_READY, c->ctx);
    pump(c);
}

static void continue_connect(struct pg_conn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        set_watch(c, EPOLLIN);
        break;
    case PGRES_POLLING_WRITING:
        set_watch(c, EPOLLOUT);
        break;
    case PGRES_POLLING_OK:
        became_ready(c);
        break;
    default: {
        /* libpq's message names host and port but never the password */
        char why[256];
        snprintf(why, sizeof why, "%s", PQerrorMessage(c->pg));
        why[strcspn(why, "\n")] = '\0';
        conn_fail(c, why[0] ? why : "connection failed");
    }
    }
}

static void flush(struct pg_conn *c)
{
    int r = PQflush(c->pg);
    if (r < 0)
        conn_fail(c, "write to the database failed");
    else
        set_watch(c, r == 1 ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

/* The index of q's statement among those prepared on this connection, or -1. */
static int prepared_index(const struct pg_conn *c, const struct pg_query *q)
{
    for (int i = 0; i < c->nprepared; i++)
        if (c->prepared[i] == q->sql)
            return i;
    return -1;
}

/* Sends q, or first its Prepare when it is to be prepared and is not yet (read_results sends q
 * itself once the Prepare is through). False when libpq refused to send. */
static bool send_query(struct pg_conn *c, struct pg_query *q)
{
    const char *const *params = (const char *const *)q->params;
    char name[16];
    int i = q->prepare && c->cfg.prepare ? prepared_index(c, q) : -1;
    if (q->prepare && c->cfg.prepare && i < 0 && c->nprepared < PG_MAX_PREPARED) {
        snprintf(name, sizeof name, "ic%d", c->nprepared);
        c->preparing = true;
        return PQsendPrepare(c->pg, name, q->sql, q->nparams, NULL);
    }
    int ok;
    if (i >= 0) {
        snprintf(name, sizeof name, "ic%d", i);
        ok = PQsendQueryPrepared(c->pg, name, q->nparams, params, NULL, NULL, 0);
    } else {
        ok = PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, params, NULL, NULL, 0);
    }
    if (ok && q->single_row)
        PQsetSingleRowMode(c->pg);
    return ok;
}

static void pump(struct pg_conn *c)
{
    while (c->state == PG_READY && !c->current && c->head) {
        struct pg_query *q = c->head;
        c->head = q->next;
        if (!c->head)
            c->tail = NULL;
        q->next = NULL;
        c->current = q; /* on failure conn_fail fails it with the others */
        if (!send_query(c, q)) {
            conn_fail(c, "sending a query failed");
            return;
        }
        q->sent = true;
        flush(c);
    }
    if (c->state == PG_READY)
        arm_deadline(c);
}

static void deliver_notifies(struct pg_conn *c)
{
    PGnotify *n;
    while (c->pg && (n = PQnotifies(c->pg)) != NULL) {
        if (c->ops->on_notify)
            c->ops->on_notify(c, n->relname, n->extra, c->ctx);
        PQfreemem(n);
    }
}

/* Hands over every complete result; returns when libpq needs more input, or when rows have
 * taken this turn's time (then `held`: the rest follow from the `more` timer). */
static void read_results(struct pg_conn *c)
{
    double until = time_mono_now() + PG_ROWS_TURN;
    c->held = false;
    while (c->state == PG_READY && c->current && !PQisBusy(c->pg)) {
        PGresult *res = PQgetResult(c->pg);
        struct pg_query *q = c->current;
        if (!res) {
            c->current = NULL;
            PGresult *last = c->last;
            c->last = NULL;
            const char *err = NULL;
            if (!last || PQresultStatus(last) == PGRES_FATAL_ERROR ||
                PQresultStatus(last) == PGRES_BAD_RESPONSE)
                err = last ? PQresultErrorField(last, PG_DIAG_MESSAGE_PRIMARY) : "no result";
            if (c->preparing && !err) { /* the statement is ready: now q itself */
                c->preparing = false;
                c->prepared[c->nprepared++] = q->sql;
                PQclear(last);
                c->current = q;
                if (!send_query(c, q)) {
                    conn_fail(c, "sending a query failed");
                    return;
                }
                flush(c);
                continue;
            }
            c->preparing = false;
            q->on_done(q, last, err ? err : NULL);
            PQclear(last);
            pump(c);
            continue;
        }
        if (PQresultStatus(res) == PGRES_SINGLE_TUPLE) {
            /* a streaming query is timed on progress, not on its total length: a refresh of
             * many rows may take longer than the timeout and still be healthy */
            double now = time_mono_now();
            q->deadline = now + c->cfg.timeout;
            if (q->on_row)
                q->on_row(q, res);
            PQclear(res);
            if (now >= until) {
                c->held = true;
                io_timer_arm(c->loop, &c->more, 0);
                return;
            }
        } else {
            PQclear(c->last);
            c->last = res;
        }
    }
}

static void on_socket(struct io_loop *loop, int fd, uint32_t events, void *ctx)
{
    struct pg_conn *c = ctx;
    if (!c->pg || fd != PQsocket(c->pg))
        return; /* stale event for a socket closed earlier in this iteration */
    if (c->state == PG_CONNECTING) {
        continue_connect(c);
        return;
    }
    if (events & EPOLLOUT) {
        flush(c);
        if (c->state != PG_READY)
            return;
    }
    /* while held, what arrives waits in the socket: a backlog that the turns have not taken stays
     * under TCP's flow control instead of growing libpq's buffer */
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->held) {
        if (!PQconsumeInput(c->pg)) {
            char why[256];
            snprintf(why, sizeof why, "%s", PQerrorMessage(c->pg));
            why[strcspn(why, "\n")] = '\0';
            conn_fail(c, why[0] ? why : "connection closed");
            return;
        }
        read_results(c);
        deliver_notifies(c);
    }
}

static void on_more(struct io_loop *loop, struct io_timer *t)
{
    (void)loop;
    struct pg_conn *c = CONN_OF(t, more);
    if (c->held && c->state == PG_READY) {
        read_results(c);
        deliver_notifies(c);
    }
}

static void on_deadline(struct io_loop *loop, struct io_timer *t)
{
    struct pg_conn *c = CONN_OF(t, deadline);
    double now = time_mono_now();
    if (c->state == PG_CONNECTING && now >= c->connect_deadline) {
        conn_fail(c, "connection attempt timed out");
        return;
    }
    if (c->current && now >= c->current->deadline) {
        conn_fail(c, "query timed out");
        return;
    }
    /* queued queries that waited too long (the connection is still connecting or busy) */
    for (struct pg_query **p = &c->head; *p;) {
        struct pg_query *q = *p;
        if (now >= q->deadline) {
            *p = q->next;
            if (c->tail == q) {
                c->tail = NULL;
                for (struct pg_query *x = c->head; x; x = x->next)
                    c->tail = x;
            }
            fail_query(q, "query timed out waiting for the database");
        } else {
            p = &q->next;
        }
    }
    arm_deadline(c);
}

struct pg_conn_config pg_conn_config_for(const struct settings *s, const char *name, bool streaming)
{
    return (struct pg_conn_config){.name = name,
                                   .conninfo = s->db,
                                   .timeout = s->db_timeout,
                                   .server_timeout = !streaming,
                                   .backoff_min = s->reconnect_min,
                                   .backoff_max = s->reconnect_max,
                                   .prepare = s->db_prepared != 0};
}

struct pg_conn *pg_conn_new(struct io_loop *loop, const struct pg_conn_config *cfg,
                            const struct pg_conn_ops *ops, void *ctx)
{
    struct pg_conn *c = xcalloc(1, sizeof *c);
    c->loop = loop;
    c->cfg = *cfg;
    c->conninfo = cfg->conninfo ? xstrdup(cfg->conninfo) : NULL;
    c->cfg.conninfo = NULL;
    c->ops = ops;
    c->ctx = ctx;
    c->state = PG_DOWN;
    c->backoff = cfg->backoff_min;
    c->retry.fn = on_retry;
    c->deadline.fn = on_deadline;
    c->more.fn = on_more;
    return c;
}

void pg_conn_start(struct pg_conn *c)
{
    start_connect(c);
}

enum pg_state pg_conn_state(const struct pg_conn *c)
{
    return c->state;
}

unsigned long pg_conn_reconnects(const struct pg_conn *c)
{
    return c->reconnects;
}

void pg_conn_submit(struct pg_conn *c, struct pg_query *q)
{
    q->next = NULL;
    q->sent = false;
    q->deadline = time_mono_now() + c->cfg.timeout;
    if (c->state == PG_DOWN) {
        fail_query(q, "database unavailable");
        return;
    }
    if (c->tail)
        c->tail->next = q;
    else
        c->head = q;
    c->tail = q;
    pump(c);
    if (c->state == PG_CONNECTING)
        arm_deadline(c);
}

void pg_conn_reset(struct pg_conn *c, const char *why)
{
    if (c->state != PG_DOWN)
        conn_fail(c, why);
}

void pg_conn_free(struct pg_conn *c)
{
    if (!c)
        return;
    c->closing = true;
    io_timer_disarm(c->loop, &c->retry);
    if (c->state != PG_DOWN)
        conn_fail(c, "shutting down");
    io_timer_disarm(c->loop, &c->retry);
    free(c->conninfo);
    free(c);
}
