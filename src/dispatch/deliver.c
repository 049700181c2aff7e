/*
 * Delivery of outbox rows (SPEC §6.1, §6.2). Per target, a claim takes due rows with
 * FOR UPDATE SKIP LOCKED under a lease into a ready queue of up to --delivery-concurrency rows;
 * a row leaves the queue for a delivery slot (--delivery-concurrency per target) when its breaker
 * lets it, is rendered and POSTed through the shared libcurl loop, and its outcome is written back
 * in a batch (delivered, retry later with backoff and jitter, or abandoned), with
 * integration_logs rows for uon and ms. Targets never wait on each other: each has its own
 * queue, slots, breaker and claim.
 *
 * Why a queue: a claim used to ask for as many rows as slots were free when it was sent, but
 * against a quick target every slot was free again by the time it returned, and the slots then
 * stood idle while the next claim waited its turn on the delivery connection: 2 of 32 busy on
 * average, 16 rows per claim (docs/PERFORMANCE-NOTES.md, section 12). With the queue a freed slot
 * takes the next claimed row at once, and the next claim is sent while the queue still holds half.
 * Claims run ahead only while no accepted event waits for its commit: beside a busy intake, on the
 * same two cores, deliveries at full speed pushed the intake's p99 past 10 ms. A queued row waits
 * at most about one --delivery-timeout for a slot, well inside its lease; when the breaker opens,
 * the queue is handed back to the outbox (SQL_OUTBOX_UNCLAIM) rather than held.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dispatch/dispatch_int.h"
#include "dispatch/event.h"
#include "dispatch/queries.h"
#include "util/buf.h"
#include "util/container.h"
#include "util/log.h"
#include "util/params.h"
#include "util/rand.h"
#include "util/pace.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define LOG_BODY_MAX 65536

/* An outcome waiting to be written back. */
struct mark {
    long long id;
    const char *state; /* "delivered", "pending" (retry) or "abandoned" */
    double delay;
    char *error;
    char *log_row; /* integration_logs row as JSON text, or NULL */
    struct mark *next;
};

struct delivery {
    struct upstream_req req;
    struct dispatcher *d;
    struct delivery *next; /* in the target's ready queue */
    bool sent;             /* holds a delivery slot */
    enum target_id target;
    long long id;
    char event_id[64], number[PARAM_MAX_LEN + 1], event_type[8];
    json_t *payload;
    char *transform;
    bool synthetic_first; /* retailcrm: a dial goes out before this hangup */
    int attempts;
    double created_at;
    struct delivery_body body;
};

static void claim(struct dispatcher *d, enum target_id t);

static void flush_marks(struct dispatcher *d);

static double lease_seconds(const struct dispatcher *d)
{
    double lease = d->set->delivery_timeout * 4 + 10;
    return lease < 30 ? 30 : lease;
}

/* The integration_logs row (SPEC §6.5) of a finished delivery, as JSON text. request_data is the
 * body we sent (our own JSON); response_data is the target's answer when jansson reads it as a
 * JSON object or array (a text PostgreSQL's jsonb accepts too), else {"status": N}, else null. */
static char *log_row(const struct delivery *dl, const char *state, const char *error, long status,
                     const char *response, size_t response_len)
{
    struct buf b;
    buf_init(&b, (size_t)1 << 40);
    buf_append_str(&b, "{\"enterprise_number\":");
    buf_append_json_string(&b, dl->number, strlen(dl->number));
    buf_printf(&b, ",\"integration_type\":\"%s\",\"event_type\":", target_names[dl->target]);
    buf_append_json_string(&b, dl->event_type, strlen(dl->event_type)); /* as the row has it */
    buf_append_str(&b, ",\"request_data\":");
    buf_append_str(&b, dl->body.json ? dl->body.json : "null");
    buf_append_str(&b, ",\"response_data\":");
    json_t *resp = response && response_len && response_len <= LOG_BODY_MAX
                       ? json_loadb(response, response_len, 0, NULL)
                       : NULL;
    if (resp)
        buf_append(&b, response, response_len);
    else if (status)
        buf_printf(&b, "{\"status\":%ld}", status);
    else
        buf_append_str(&b, "null");
    json_decref(resp);
    buf_printf(&b, ",\"status\":\"%s\",\"error_message\":",
               strcmp(state, "delivered") == 0 ? "success" : "error");
    buf_append_json_or_null(&b, error);
    buf_append(&b, "}", 1);
    return buf_steal(&b, NULL);
}

static void add_mark(struct dispatcher *d, struct delivery *dl, const char *state, double delay,
                     const char *error, long status, const char *response, size_t response_len)
{
    struct mark *m = xcalloc(1, sizeof *m);
    m->id = dl->id;
    m->state = state;
    m->delay = delay;
    m->error = error ? xstrdup(error) : NULL;
    bool finished = strcmp(state, "pending") != 0;
    if (finished && (dl->target == TARGET_UON || dl->target == TARGET_MS))
        m->log_row = log_row(dl, state, error, status, response, response_len);
    m->next = d->marks;
    d->marks = m;
    flush_marks(d);
}

static void free_delivery(struct delivery *dl)
{
    struct dispatcher *d = dl->d;
    if (dl->sent)
        atomic_fetch_sub(&d->targets[dl->target].stats.in_flight, 1);
    json_decref(dl->payload);
    free(dl->transform);
    free(dl->body.json);
    free(dl->req.url);
    free(dl);
}

static double retry_delay(const struct dispatcher *d, int attempts)
{
    double delay = d->set->retry_min;
    for (int i = 1; i < attempts && delay < d->set->retry_max; i++)
        delay *= 2;
    if (delay > d->set->retry_max)
        delay = d->set->retry_max;
    return delay * (0.5 + 0.5 * rand_unit()); /* jitter: spread retries of a burst */
}

static bool retryable(long status)
{
    return status == 0 || status >= 500 || status == 408 || status == 429;
}

static void send_current(struct delivery *dl);
static void unclaim_ready(struct dispatcher *d, enum target_id t);

static void on_response(struct upstream_req *r, long status, const char *body, size_t len,
                        const char *error)
{
    struct delivery *dl = container_of(r, struct delivery, req);
    struct dispatcher *d = dl->d;
    struct target_state *ts = &d->targets[dl->target];
    if (d->closing) { /* not an outcome: the row's lease lapses, or a restart releases it */
        free_delivery(dl);
        return;
    }
    const char *target = target_names[dl->target];
    char why[160];
    if (status >= 200 && status < 300) {
        breaker_success(&ts->breaker);
        atomic_store(&ts->stats.breaker, ts->breaker.state);
        if (dl->synthetic_first) { /* the synthetic dial is through: now the hangup itself */
            dl->synthetic_first = false;
            send_current(dl);
            return;
        }
        STAT_INC(d->stats, dispatch_delivered);
        log_debug("delivered: event %s to %s", dl->event_id, target);
        add_mark(d, dl, "delivered", 0, NULL, status, body, len);
        free_delivery(dl);
        deliver_kick(d);
        return;
    }
    if (status)
        snprintf(why, sizeof why, "HTTP %ld", status);
    else
        snprintf(why, sizeof why, "%s", error ? error : "no response");
    if (retryable(status)) {
        breaker_failure(&ts->breaker, time_mono_now());
        atomic_store(&ts->stats.breaker, ts->breaker.state);
    }
    double delay = retry_delay(d, dl->attempts);
    bool past_horizon = time_real_now() + delay - dl->created_at > d->set->retry_horizon;
    if (!retryable(status) || past_horizon) {
        STAT_INC(d->stats, dispatch_abandoned);
        log_warn("abandoned: event %s to %s after %d attempts (%s)", dl->event_id, target,
                 dl->attempts, why);
        add_mark(d, dl, "abandoned", 0, why, status, body, len);
    } else {
        STAT_INC(d->stats, dispatch_retried);
        log_warn("delivery failed: event %s to %s (%s); retry in %.1fs", dl->event_id, target, why,
                 delay);
        add_mark(d, dl, "pending", delay, why, status, body, len);
    }
    free_delivery(dl);
    deliver_kick(d); /* a slot is free, or the breaker opened and the queue goes back */
}

/* Renders and POSTs the delivery's current step (synthetic dial or the event itself). */
static void send_current(struct delivery *dl)
{
    struct dispatcher *d = dl->d;
    free(dl->body.json);
    enum target_id t = dl->target;
    if (delivery_render(t, dl->number, dl->payload, dl->synthetic_first, dl->transform,
                        &dl->body) != 0) {
        STAT_INC(d->stats, dispatch_abandoned);
        log_error("abandoned: event %s to %s: malformed outbox payload", dl->event_id,
                  target_names[t]);
        add_mark(d, dl, "abandoned", 0, "malformed outbox payload", 0, NULL, 0);
        free_delivery(dl);
        return;
    }
    if (!dl->body.path) { /* nothing to send for this event and target (e.g. ms dial download) */
        add_mark(d, dl, "delivered", 0, "not sent: not applicable to this target", 0, NULL, 0);
        free_delivery(dl);
        return;
    }
    size_t n = strlen(d->targets[t].base_url) + strlen(dl->body.path) + 1;
    free(dl->req.url);
    dl->req = (struct upstream_req){.method = "POST",
                                    .url = xmalloc(n),
                                    .body = dl->body.json,
                                    .body_len = strlen(dl->body.json),
                                    .timeout = d->set->delivery_timeout,
                                    .done = on_response};
    snprintf(dl->req.url, n, "%s%s", d->targets[t].base_url, dl->body.path);
    upstream_send(d->up, &dl->req);
}

static void start_row(struct dispatcher *d, enum target_id t, const PGresult *res, int row)
{
    struct delivery *dl = xcalloc(1, sizeof *dl);
    dl->d = d;
    dl->target = t;
    dl->id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
    snprintf(dl->event_id, sizeof dl->event_id, "%s", PQgetvalue(res, row, 1));
    snprintf(dl->number, sizeof dl->number, "%s", PQgetvalue(res, row, 2));
    snprintf(dl->event_type, sizeof dl->event_type, "%s", PQgetvalue(res, row, 3));
    dl->payload = json_loads(PQgetvalue(res, row, 4), 0, NULL);
    dl->created_at = strtod(PQgetvalue(res, row, 5), NULL);
    dl->attempts = (int)strtol(PQgetvalue(res, row, 6), NULL, 10);
    const char *origin = json_string_value(json_object_get(dl->payload, "origin"));
    dl->synthetic_first =
        PQgetvalue(res, row, 7)[0] == 't' && !(origin && strcmp(origin, "download") == 0);
    if (!PQgetisnull(res, row, 8))
        dl->transform = xstrdup(PQgetvalue(res, row, 8));
    struct target_state *ts = &d->targets[t];
    if (ts->ready_tail)
        ts->ready_tail->next = dl;
    else
        ts->ready = dl;
    ts->ready_tail = dl;
    ts->nready++;
}

/* The oldest row of the target's ready queue, taken off it; NULL when it is empty. */
static struct delivery *ready_pop(struct target_state *ts)
{
    struct delivery *dl = ts->ready;
    if (!dl)
        return NULL;
    ts->ready = dl->next;
    if (!ts->ready)
        ts->ready_tail = NULL;
    ts->nready--;
    dl->next = NULL;
    return dl;
}

/* Starts queued rows while the target has free slots and its breaker lets them through (a
 * half-open breaker: the one probe). While the breaker is open, what is queued (rows of a claim
 * that was on its way when it opened, too) goes back to the outbox. */
static void pump(struct dispatcher *d, enum target_id t)
{
    struct target_state *ts = &d->targets[t];
    while (ts->ready && atomic_load(&ts->stats.in_flight) < d->set->delivery_concurrency &&
           breaker_allow(&ts->breaker, time_mono_now(), 1) == 1) {
        struct delivery *dl = ready_pop(ts);
        dl->sent = true;
        atomic_fetch_add(&ts->stats.in_flight, 1);
        send_current(dl);
    }
    atomic_store(&ts->stats.breaker, ts->breaker.state);
    if (ts->ready && ts->breaker.state == BREAKER_OPEN)
        unclaim_ready(d, t);
}

struct unclaim {
    struct pg_query q;
    struct buf ids;
};

static void unclaim_done(struct pg_query *q, const PGresult *res, const char *error)
{
    struct unclaim *u = container_of(q, struct unclaim, q);
    if (error || PQresultStatus(res) != PGRES_COMMAND_OK)
        log_warn("handing claimed rows back to the outbox failed (%s); they are claimed again "
                 "after their lease",
                 error ? error : "unexpected result");
    buf_deinit(&u->ids);
    free(u);
}

/* Hands the target's queued rows back to the outbox, so that no lease runs out while they wait
 * for a breaker to close. Without a delivery connection their leases lapse instead. */
static void unclaim_ready(struct dispatcher *d, enum target_id t)
{
    struct target_state *ts = &d->targets[t];
    if (!ts->ready)
        return;
    struct unclaim *u = xcalloc(1, sizeof *u);
    buf_init(&u->ids, (size_t)1 << 40);
    log_info("%s: breaker open; %ld claimed rows handed back to the outbox", target_names[t],
             ts->nready);
    for (struct delivery *dl; (dl = ready_pop(ts));) {
        buf_printf(&u->ids, "%s%lld", u->ids.len ? "," : "{", dl->id);
        free_delivery(dl);
    }
    buf_append(&u->ids, "}", 1);
    if (pg_conn_state(d->delivery_conn) != PG_READY) {
        buf_deinit(&u->ids);
        free(u);
        return;
    }
    u->q = (struct pg_query){.sql = SQL_OUTBOX_UNCLAIM, .nparams = 2, .on_done = unclaim_done};
    u->q.params[0] = u->ids.data;
    u->q.params[1] = d->instance;
    pg_conn_submit(d->delivery_conn, &u->q);
}

static void claim_done(struct pg_query *q, const PGresult *res, const char *error)
{
    struct target_state *ts = container_of(q, struct target_state, claim_q);
    struct dispatcher *d = q->ctx;
    enum target_id t = (enum target_id)(ts - d->targets);
    ts->claiming = false;
    if (error || PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_warn("outbox claim for %s failed: %s", target_names[t],
                 error ? error : "unexpected result");
        return;
    }
    int n = PQntuples(res);
    for (int i = 0; i < n; i++)
        start_row(d, t, res, i);
    pump(d, t);
    if (ts->claim_again || n > 0) {
        ts->claim_again = false;
        claim(d, t);
    }
}

static void claim(struct dispatcher *d, enum target_id t)
{
    struct target_state *ts = &d->targets[t];
    if (!d->started || d->quiescing || pg_conn_state(d->delivery_conn) != PG_READY)
        return;
    if (ts->claiming) {
        ts->claim_again = true;
        return;
    }
    /* Closed: while no accepted event waits for its commit, top the queue up once it is down to
     * half; while one does, claim only for the slots free now, so that the acknowledgements
     * callers wait for get the database and the cores first (docs/PERFORMANCE-NOTES.md,
     * section 12). Half-open: one row for the probe. */
    long concurrency = d->set->delivery_concurrency, allowed = 0;
    long free_slots = concurrency - atomic_load(&ts->stats.in_flight) - ts->nready;
    enum breaker_state state = breaker_state_at(&ts->breaker, time_mono_now());
    atomic_store(&ts->stats.breaker, state);
    if (state == BREAKER_CLOSED && !intake_idle(d))
        allowed = free_slots > 0 ? free_slots : 0;
    else if (state == BREAKER_CLOSED && ts->nready <= concurrency / 2)
        allowed = concurrency - ts->nready;
    else if (state == BREAKER_HALF_OPEN && !ts->breaker.probing && ts->nready == 0)
        allowed = 1;
    if (allowed == 0)
        return;
    ts->claiming = true;
    snprintf(ts->claim_params[0], sizeof ts->claim_params[0], "%s", target_names[t]);
    snprintf(ts->claim_params[1], sizeof ts->claim_params[1], "%ld", allowed);
    snprintf(ts->claim_params[2], sizeof ts->claim_params[2], "%.1f", lease_seconds(d));
    ts->claim_q = (struct pg_query){.sql = d->sip_unit ? SQL_OUTBOX_CLAIM(SQL_TRANSFORM_SIP_UNIT)
                                                       : SQL_OUTBOX_CLAIM(SQL_TRANSFORM_NONE),
                                    .nparams = 4,
                                    .on_done = claim_done,
                                    .ctx = d};
    ts->claim_q.params[0] = ts->claim_params[0];
    ts->claim_q.params[1] = ts->claim_params[1];
    ts->claim_q.params[2] = d->instance;
    ts->claim_q.params[3] = ts->claim_params[2];
    pg_conn_submit(d->delivery_conn, &ts->claim_q);
}

void deliver_kick(struct dispatcher *d)
{
    for (int t = 0; t < TARGET_COUNT; t++) {
        pump(d, (enum target_id)t);
        claim(d, (enum target_id)t);
    }
}

static void free_marks(struct mark *m)
{
    while (m) {
        struct mark *next = m->next;
        free(m->error);
        free(m->log_row);
        free(m);
        m = next;
    }
}

static void marks_written(struct pg_query *q, const PGresult *res, const char *error)
{
    struct dispatcher *d = q->ctx;
    if (q == &d->log_q) {
        if (error)
            log_warn("writing integration_logs failed: %s", error);
        free(d->log_param);
        d->log_param = NULL;
        return;
    }
    if (error)
        log_warn("recording delivery outcomes failed (%s); the rows are retried after their "
                 "lease",
                 error);
    free(d->mark_param);
    d->mark_param = NULL;
    free_marks(d->marks_in_flight);
    d->marks_in_flight = NULL;
    d->marking = false;
    deliver_kick(d); /* a delivered dial may have released its hangup */
    flush_marks(d);
}

static void flush_marks(struct dispatcher *d)
{
    if (d->marking || !d->marks || d->log_param)
        return;
    /* both parameters are written by hand: every delivery passes through here */
    struct buf marks, logs;
    buf_init(&marks, (size_t)1 << 40);
    buf_init(&logs, (size_t)1 << 40);
    for (struct mark *m = d->marks; m; m = m->next) {
        char delay[32];
        time_format_seconds(m->delay, delay);
        buf_printf(&marks,
                   "%s{\"id\":%lld,\"state\":\"%s\",\"delay\":%s,\"error\":", marks.len ? "," : "[",
                   m->id, m->state, delay);
        buf_append_json_or_null(&marks, m->error);
        buf_append(&marks, "}", 1);
        if (m->log_row) {
            buf_append_str(&logs, logs.len ? "," : "[");
            buf_append_str(&logs, m->log_row);
        }
    }
    buf_append(&marks, "]", 1);
    d->marks_in_flight = d->marks;
    d->marks = NULL;
    d->marking = true;
    d->mark_param = buf_steal(&marks, NULL);
    d->mark_q =
        (struct pg_query){.sql = SQL_OUTBOX_MARK, .nparams = 1, .on_done = marks_written, .ctx = d};
    d->mark_q.params[0] = d->mark_param;
    if (logs.len) {
        buf_append(&logs, "]", 1);
        d->log_param = buf_steal(&logs, NULL);
        d->log_q = (struct pg_query){.sql = SQL_INTEGRATION_LOGS,
                                     .nparams = 1,
                                     .prepare = true,
                                     .on_done = marks_written,
                                     .ctx = d};
        d->log_q.params[0] = d->log_param;
        pg_conn_submit(d->delivery_conn, &d->log_q);
    }
    buf_deinit(&logs);
    pg_conn_submit(d->delivery_conn, &d->mark_q);
}

/* --- set-up after each (re)connect, and housekeeping --- */

static void setup_done(struct pg_query *q, const PGresult *res, const char *error)
{
    struct dispatcher *d = q->ctx;
    if (error) {
        log_warn("dispatch set-up query failed: %s (has `integration_cache migrate` run?)", error);
        atomic_store(&d->ready, true); /* best effort from here on rather than no intake */
        return;
    }
    if (q == &d->setup_q[0]) {
        d->sip_unit = PQgetvalue(res, 0, 0)[0] == 't';
    } else if (q == &d->setup_q[2]) {
        for (int i = 0; i < PQntuples(res); i++)
            dedup_check_and_add(d->dedup, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
                                strtod(PQgetvalue(res, i, 2), NULL));
        d->dedup_loaded = true;
        atomic_store(&d->ready, true);
        log_info("dedup: %d recent events remembered from the outbox", PQntuples(res));
    }
    if (q == &d->setup_q[1]) { /* own leases released: deliver */
        d->started = true;
        deliver_kick(d);
        flush_marks(d);
    }
}

static void delivery_state(struct pg_conn *c, enum pg_state state, void *ctx)
{
    struct dispatcher *d = ctx;
    if (state != PG_READY) {
        if (!atomic_load(&d->ready)) /* cannot ask the outbox: accept (spool) rather than refuse */
            log_warn("dedup: the outbox could not be read; duplicates are caught from now on");
        atomic_store(&d->ready, true);
        d->started = false;
        for (int t = 0; t < TARGET_COUNT; t++)
            d->targets[t].claiming = false;
        if (d->marking) { /* the write-back failed with the connection; resend later */
            d->marking = false;
            struct mark **tail = &d->marks;
            while (*tail)
                tail = &(*tail)->next;
            *tail = d->marks_in_flight;
            d->marks_in_flight = NULL;
            free(d->mark_param);
            d->mark_param = NULL;
        }
        free(d->log_param);
        d->log_param = NULL;
        return;
    }
    d->setup_q[0] = (struct pg_query){.sql = SQL_SIP_UNIT_EXISTS, .on_done = setup_done, .ctx = d};
    d->setup_q[1] =
        (struct pg_query){.sql = SQL_OUTBOX_RELEASE, .nparams = 1, .on_done = setup_done, .ctx = d};
    d->setup_q[1].params[0] = d->instance;
    pg_conn_submit(c, &d->setup_q[0]);
    if (!d->dedup_loaded) {
        d->setup_q[2] =
            (struct pg_query){.sql = SQL_OUTBOX_RECENT, .on_done = setup_done, .ctx = d};
        pg_conn_submit(c, &d->setup_q[2]);
    }
    pg_conn_submit(c, &d->setup_q[1]);
}

const struct pg_conn_ops delivery_conn_ops = {.on_state = delivery_state};

/* The pending count walks every pending row: with a backlog of 100,000 rows it took 30-130 ms
 * of PostgreSQL's CPU and held the delivery connection meanwhile, and counting every 2 s that way
 * raised the intake p99 from 7 to 22 ms (docs/PERFORMANCE-NOTES.md, section 6). So the count is
 * paced: at most 0.5 % of the time, between 2 s and 60 s apart. */
#define COUNT_SPACING 200.0
#define COUNT_EVERY_MIN 2.0
#define COUNT_EVERY_MAX 60.0

static void housekeeping_done(struct pg_query *q, const PGresult *res, const char *error)
{
    struct dispatcher *d = q->ctx;
    d->housekeeping = false;
    double now = time_mono_now();
    d->next_count = now + pace_interval(now - d->count_started, COUNT_SPACING, COUNT_EVERY_MIN,
                                        COUNT_EVERY_MAX);
    if (error || PQresultStatus(res) != PGRES_TUPLES_OK)
        return;
    long counts[TARGET_COUNT] = {0};
    for (int i = 0; i < PQntuples(res); i++)
        for (int t = 0; t < TARGET_COUNT; t++)
            if (strcmp(PQgetvalue(res, i, 0), target_names[t]) == 0)
                counts[t] = strtol(PQgetvalue(res, i, 1), NULL, 10);
    for (int t = 0; t < TARGET_COUNT; t++)
        atomic_store(&d->targets[t].stats.pending, counts[t]);
}

static void retention_done(struct pg_query *q, const PGresult *res, const char *error)
{
    /* PQcmdTuples takes a non-const result: libpq's signature, it does not write */
    if (error || PQresultStatus(res) != PGRES_COMMAND_OK)
        log_warn("outbox retention sweep failed: %s", error ? error : "unexpected result");
    else if (strcmp(PQcmdTuples((PGresult *)res), "0") != 0)
        log_info("outbox retention: deleted %s finished rows older than %ss",
                 PQcmdTuples((PGresult *)res), q->params[0]);
    free(q->params[0]);
    free(q);
}

/* One info line a minute instead of one per event: at thousands of events a second, per-event
 * lines (kept at debug level) would be most of the service's I/O. */
static void log_summary(struct dispatcher *d, double now)
{
    if (now - d->last_summary < 60)
        return;
    d->last_summary = now;
    unsigned long v[4] = {
        STAT_GET(d->stats, dispatch_accepted), STAT_GET(d->stats, dispatch_delivered),
        STAT_GET(d->stats, dispatch_retried), STAT_GET(d->stats, dispatch_abandoned)};
    if (memcmp(v, d->summarized, sizeof v) == 0)
        return;
    log_info("dispatch in the last minute: %lu accepted, %lu delivered, %lu retried, %lu "
             "abandoned; pending retailcrm %ld, uon %ld, ms %ld",
             v[0] - d->summarized[0], v[1] - d->summarized[1], v[2] - d->summarized[2],
             v[3] - d->summarized[3], atomic_load(&d->targets[TARGET_RETAILCRM].stats.pending),
             atomic_load(&d->targets[TARGET_UON].stats.pending),
             atomic_load(&d->targets[TARGET_MS].stats.pending));
    memcpy(d->summarized, v, sizeof v);
}

static void on_housekeeping(struct io_loop *loop, struct io_timer *t)
{
    struct dispatcher *d = container_of(t, struct dispatcher, housekeeping_timer);
    io_timer_arm(loop, t, 2.0);
    log_summary(d, time_mono_now());
    if (!d->started)
        return;
    if (!d->housekeeping && time_mono_now() >= d->next_count) {
        d->housekeeping = true;
        d->count_started = time_mono_now();
        d->housekeeping_q =
            (struct pg_query){.sql = SQL_OUTBOX_PENDING, .on_done = housekeeping_done, .ctx = d};
        pg_conn_submit(d->delivery_conn, &d->housekeeping_q);
    }
    double now = time_mono_now();
    if (now - d->last_retention >= 60) {
        d->last_retention = now;
        struct pg_query *q = xcalloc(1, sizeof *q);
        *q =
            (struct pg_query){.sql = SQL_OUTBOX_RETENTION, .nparams = 1, .on_done = retention_done};
        q->params[0] = xmalloc(32);
        snprintf(q->params[0], 32, "%.0f", d->set->outbox_retention);
        pg_conn_submit(d->delivery_conn, q);
    }
}

static void on_poll(struct io_loop *loop, struct io_timer *t)
{
    struct dispatcher *d = container_of(t, struct dispatcher, poll_timer);
    io_timer_arm(loop, t, d->set->dispatch_poll);
    deliver_kick(d);
}

void deliver_init(struct dispatcher *d)
{
    const char *urls[TARGET_COUNT] = {d->set->retailcrm_url, d->set->uon_url, d->set->ms_url};
    for (int t = 0; t < TARGET_COUNT; t++) {
        breaker_init(&d->targets[t].breaker, (unsigned)d->set->breaker_failures,
                     d->set->breaker_cooldown);
        d->targets[t].base_url = urls[t];
    }
    d->poll_timer.fn = on_poll;
    d->housekeeping_timer.fn = on_housekeeping;
    d->last_summary = time_mono_now();
    d->last_retention = d->last_summary - 60; /* the first sweep comes with the first tick */
    io_timer_arm(d->loop, &d->poll_timer, d->set->dispatch_poll);
    io_timer_arm(d->loop, &d->housekeeping_timer, 2.0);
}

void deliver_free(struct dispatcher *d)
{
    io_timer_disarm(d->loop, &d->poll_timer);
    io_timer_disarm(d->loop, &d->housekeeping_timer);
    for (int t = 0; t < TARGET_COUNT; t++) /* leases lapse, or a restart releases them */
        for (struct delivery *dl; (dl = ready_pop(&d->targets[t]));)
            free_delivery(dl);
    free_marks(d->marks);
    free_marks(d->marks_in_flight);
    d->marks = d->marks_in_flight = NULL;
    free(d->mark_param);
    free(d->log_param);
}

bool deliver_idle(struct dispatcher *d)
{
    if (d->marks || d->marking)
        return false;
    for (int t = 0; t < TARGET_COUNT; t++)
        if (atomic_load(&d->targets[t].stats.in_flight) || d->targets[t].claiming ||
            d->targets[t].ready)
            return false;
    return true;
}
