/*
 * Durable intake with group commit (SPEC §6.2). Accepted events queue up on the I/O thread in one
 * of a few lanes (chosen by uniqueId, each with its own connection); while a lane's INSERT is in
 * flight its next batch gathers, so concurrent requests share commits and lanes commit side by
 * side. When the outbox cannot take a batch (connection down, statement failed, timed out) the
 * batch goes to the spool, fsync'd, and is acknowledged from there. While anything is spooled, new
 * batches go to the spool too, so the outbox receives events in the order they were accepted; the
 * spool is replayed in chunks as soon as the outbox connection is back.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch/dispatch_int.h"
#include "dispatch/queries.h"
#include "util/buf.h"
#include "util/container.h"
#include "util/log.h"

#define REPLAY_CHUNK (1024 * 1024)

static void finish_batch(struct dispatcher *d, struct dispatch_job *batch, int status, bool spooled)
{
    while (batch) {
        struct dispatch_job *next = batch->next;
        batch->status = status;
        batch->spooled = spooled;
        batch->done(batch);
        batch = next;
    }
}

/* "[event1,event2,...]" or, for the spool, "event1\nevent2\n". */
static char *join_batch(struct dispatch_job *batch, bool lines, size_t *len)
{
    struct buf b;
    buf_init(&b, (size_t)1 << 34);
    if (!lines)
        buf_append(&b, "[", 1);
    for (struct dispatch_job *j = batch; j; j = j->next) {
        if (!lines && j != batch)
            buf_append(&b, ",", 1);
        buf_append_str(&b, j->rows);
        if (lines)
            buf_append(&b, "\n", 1);
    }
    if (!lines)
        buf_append(&b, "]", 1);
    return buf_steal(&b, len);
}

static void spool_batch(struct dispatcher *d, struct dispatch_job *batch)
{
    size_t len, n = 0;
    char *text = join_batch(batch, true, &len);
    int rc = d->spool ? spool_append(d->spool, text, len) : -1;
    free(text);
    for (struct dispatch_job *j = batch; j; j = j->next)
        n++;
    if (rc != 0) {
        log_error("cannot record %zu events: the database is unavailable and the spool failed", n);
        finish_batch(d, batch, 503, false);
        return;
    }
    STAT_ADD(d->stats, dispatch_spooled, n);
    log_warn("spooled %zu events (database unavailable)", n);
    finish_batch(d, batch, 200, true);
}

static void insert_done(struct pg_query *q, const PGresult *res, const char *error)
{
    struct intake_lane *lane = container_of(q, struct intake_lane, q);
    struct dispatcher *d = lane->d;
    struct dispatch_job *batch = lane->inserting;
    lane->inserting = NULL;
    free(lane->param);
    lane->param = NULL;
    if (!error && PQresultStatus(res) == PGRES_COMMAND_OK) {
        finish_batch(d, batch, 200, false);
        deliver_kick(d);
    } else {
        log_warn("outbox insert failed (%s): spooling", error ? error : "unexpected result");
        spool_batch(d, batch);
    }
    intake_flush(d);
}

static void replay_done(struct pg_query *q, const PGresult *res, const char *error)
{
    struct dispatcher *d = q->ctx;
    d->replaying = false;
    free(d->replay_param);
    d->replay_param = NULL;
    if (!error && PQresultStatus(res) == PGRES_COMMAND_OK) {
        d->replay_backoff = 0;
        spool_advance(d->spool, d->replay_len);
        if (!spool_pending(d->spool))
            log_info("spool replayed: every spooled event is in the outbox");
        deliver_kick(d);
    } else {
        d->replay_backoff = d->replay_backoff ? d->replay_backoff * 2 : 1;
        if (d->replay_backoff > 30)
            d->replay_backoff = 30;
        log_warn("spool replay failed (%s); next attempt in %.0fs",
                 error ? error : "unexpected result", d->replay_backoff);
        io_timer_arm(d->loop, &d->replay_timer, d->replay_backoff);
    }
    intake_flush(d);
}

/* Starts replaying the next spool chunk on lane 0; false when there is nothing to replay. */
static bool replay_next(struct dispatcher *d)
{
    char *chunk;
    size_t len;
    if (spool_next_chunk(d->spool, REPLAY_CHUNK, &chunk, &len) != 0 || !chunk)
        return false;
    /* lines -> one JSON array of events (an earlier version spooled arrays of rows; the INSERT
     * takes both); a corrupt line is skipped, never fatal */
    struct buf b;
    buf_init(&b, (size_t)1 << 34);
    buf_append(&b, "[", 1);
    size_t lines = 0;
    for (char *line = chunk, *nl; (nl = memchr(line, '\n', (size_t)(chunk + len - line)));
         line = nl + 1) {
        *nl = '\0';
        json_t *v = json_loads(line, 0, NULL);
        if (json_is_object(v) || json_is_array(v)) {
            buf_append_str(&b, lines++ ? "," : "");
            buf_append_str(&b, line);
        } else {
            log_warn("spool: skipping an unreadable line (%zu bytes)", strlen(line));
        }
        json_decref(v);
    }
    buf_append(&b, "]", 1);
    free(chunk);
    d->replaying = true;
    d->replay_len = len;
    d->replay_param = buf_steal(&b, NULL);
    log_info("spool: replaying %zu events into the outbox", lines);
    d->replay_q = (struct pg_query){
        .sql = SQL_OUTBOX_INSERT, .nparams = 1, .prepare = true, .ctx = d, .on_done = replay_done};
    d->replay_q.params[0] = d->replay_param;
    pg_conn_submit(d->lanes[0].conn, &d->replay_q);
    return true;
}

static enum pg_state lane_state(struct intake_lane *lane)
{
    return lane->conn && !lane->d->closing ? pg_conn_state(lane->conn) : PG_DOWN;
}

static void lane_flush(struct intake_lane *lane)
{
    struct dispatcher *d = lane->d;
    struct dispatch_job *batch = lane->queue;
    if (lane->inserting || !batch)
        return;
    bool spooling = d->spool && spool_pending(d->spool);
    if (spooling && lane_state(&d->lanes[0]) == PG_READY && !d->replay_timer.armed)
        return; /* a replay is due: the outbox takes the spooled events first, in order */
    lane->queue = lane->queue_tail = NULL;
    /* DOWN: spool at once. CONNECTING: the insert waits for the connection (or its deadline,
     * then the spool), so a start-up or a reconnect in progress does not send events aside. */
    if (lane_state(lane) == PG_DOWN || spooling) {
        spool_batch(d, batch);
        return;
    }
    size_t len;
    lane->inserting = batch;
    lane->param = join_batch(batch, false, &len);
    lane->q = (struct pg_query){
        .sql = SQL_OUTBOX_INSERT, .nparams = 1, .prepare = true, .on_done = insert_done};
    lane->q.params[0] = lane->param;
    pg_conn_submit(lane->conn, &lane->q);
}

void intake_flush(struct dispatcher *d)
{
    if (!d->replaying && d->spool && spool_pending(d->spool) &&
        lane_state(&d->lanes[0]) == PG_READY && !d->replay_timer.armed) {
        bool busy = false;
        for (int i = 0; i < d->nlanes; i++)
            busy |= d->lanes[i].inserting != NULL;
        /* inserts in flight first: they were accepted before what the spool holds */
        if (!busy && !replay_next(d) && spool_pending(d->spool))
            io_timer_arm(d->loop, &d->replay_timer, 1.0); /* unreadable spool: spool on, retry */
    }
    for (int i = 0; i < d->nlanes; i++)
        lane_flush(&d->lanes[i]);
}

void intake_enqueue(struct dispatcher *d, struct dispatch_job *j)
{
    struct intake_lane *lane = &d->lanes[j->lane_key % (unsigned)d->nlanes];
    j->next = NULL;
    if (lane->queue_tail)
        lane->queue_tail->next = j;
    else
        lane->queue = j;
    lane->queue_tail = j;
    intake_flush(d);
}

bool intake_idle(struct dispatcher *d)
{
    if (d->replaying)
        return false;
    for (int i = 0; i < d->nlanes; i++)
        if (d->lanes[i].inserting || d->lanes[i].queue)
            return false;
    return true;
}

static void intake_state(struct pg_conn *c, enum pg_state state, void *ctx)
{
    if (state == PG_READY)
        intake_flush(ctx);
}

static const struct pg_conn_ops intake_conn_ops = {.on_state = intake_state};

static void on_replay_timer(struct io_loop *loop, struct io_timer *t)
{
    intake_flush(container_of(t, struct dispatcher, replay_timer));
}

void intake_init(struct dispatcher *d)
{
    d->replay_timer.fn = on_replay_timer;
    d->nlanes = (int)d->set->intake_connections;
    for (int i = 0; i < d->nlanes; i++) {
        struct pg_conn_config cfg = pg_conn_config_for(d->set, "intake", false);
        d->lanes[i].d = d;
        d->lanes[i].conn = pg_conn_new(d->loop, &cfg, &intake_conn_ops, d);
    }
}

void intake_start(struct dispatcher *d)
{
    for (int i = 0; i < d->nlanes; i++)
        pg_conn_start(d->lanes[i].conn);
}

void intake_close(struct dispatcher *d)
{
    for (int i = 0; i < d->nlanes; i++) { /* in-flight inserts fail and are spooled */
        pg_conn_free(d->lanes[i].conn);
        d->lanes[i].conn = NULL;
    }
    intake_flush(d); /* every lane is DOWN now: what is queued goes to the spool */
    io_timer_disarm(d->loop, &d->replay_timer);
}
