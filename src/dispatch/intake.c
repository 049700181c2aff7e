/*
 * Durable intake with group commit (SPEC §6.2). Accepted events queue up on the I/O thread; while
 * one INSERT is in flight the next batch gathers, so concurrent requests share commits. When the
 * outbox cannot take a batch (connection down, statement failed, timed out) the batch goes to the
 * spool, fsync'd, and is acknowledged from there. While anything is spooled, new batches go to
 * the spool too, so the outbox receives events in the order they were accepted; the spool is
 * replayed in chunks as soon as the outbox connection is back.
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

/* "[rows1,rows2,...]" or, for the spool, "rows1\nrows2\n". */
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
    struct dispatcher *d = q->ctx;
    struct dispatch_job *batch = d->inserting;
    d->inserting = NULL;
    free(d->insert_param);
    d->insert_param = NULL;
    bool ok = !error && PQresultStatus(res) == PGRES_COMMAND_OK;
    if (d->replaying) {
        d->replaying = false;
        if (ok) {
            d->replay_backoff = 0;
            spool_advance(d->spool, d->replay_len);
            if (!spool_pending(d->spool))
                log_info("spool replayed: every spooled event is in the outbox");
        } else {
            d->replay_backoff = d->replay_backoff ? d->replay_backoff * 2 : 1;
            if (d->replay_backoff > 30)
                d->replay_backoff = 30;
            log_warn("spool replay failed (%s); next attempt in %.0fs",
                     error ? error : "unexpected result", d->replay_backoff);
            io_timer_arm(d->loop, &d->replay_timer, d->replay_backoff);
        }
    } else if (ok) {
        finish_batch(d, batch, 200, false);
    } else {
        log_warn("outbox insert failed (%s): spooling", error ? error : "unexpected result");
        spool_batch(d, batch);
    }
    if (ok)
        deliver_kick(d);
    intake_flush(d);
}

static void send_insert(struct dispatcher *d, char *param)
{
    d->insert_param = param;
    d->insert_q =
        (struct pg_query){.sql = SQL_OUTBOX_INSERT, .nparams = 1, .ctx = d, .on_done = insert_done};
    d->insert_q.params[0] = param;
    pg_conn_submit(d->intake_conn, &d->insert_q);
}

/* Starts replaying the next spool chunk; false when there is nothing to replay. */
static bool replay_next(struct dispatcher *d)
{
    char *chunk;
    size_t len;
    if (spool_next_chunk(d->spool, REPLAY_CHUNK, &chunk, &len) != 0 || !chunk)
        return false;
    /* lines -> one JSON array of arrays; a torn or corrupt line is skipped, never fatal */
    struct buf b;
    buf_init(&b, (size_t)1 << 34);
    buf_append(&b, "[", 1);
    size_t lines = 0;
    for (char *line = chunk, *nl; (nl = memchr(line, '\n', (size_t)(chunk + len - line)));
         line = nl + 1) {
        *nl = '\0';
        json_error_t jerr;
        json_t *v = json_loads(line, 0, &jerr);
        if (json_is_array(v)) {
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
    log_info("spool: replaying %zu events into the outbox", lines);
    send_insert(d, buf_steal(&b, NULL));
    return true;
}

void intake_flush(struct dispatcher *d)
{
    if (d->inserting || d->replaying)
        return;
    enum pg_state st = d->intake_conn && !d->closing ? pg_conn_state(d->intake_conn) : PG_DOWN;
    if (st == PG_READY && d->spool && spool_pending(d->spool) && !d->replay_timer.armed &&
        replay_next(d))
        return; /* queued jobs wait (briefly) so the outbox keeps acceptance order */
    struct dispatch_job *batch = d->queue;
    if (!batch)
        return;
    d->queue = d->queue_tail = NULL;
    /* DOWN: spool at once. CONNECTING: the insert waits for the connection (or its deadline,
     * then the spool), so a start-up or a reconnect in progress does not send events aside. */
    if (st == PG_DOWN || (d->spool && spool_pending(d->spool))) {
        spool_batch(d, batch);
        return;
    }
    size_t len;
    d->inserting = batch;
    send_insert(d, join_batch(batch, false, &len));
}

static void intake_state(struct pg_conn *c, enum pg_state state, void *ctx)
{
    if (state == PG_READY)
        intake_flush(ctx);
}

static void on_replay_timer(struct io_loop *loop, struct io_timer *t)
{
    intake_flush(container_of(t, struct dispatcher, replay_timer));
}

void intake_init(struct dispatcher *d)
{
    d->replay_timer.fn = on_replay_timer;
}

const struct pg_conn_ops intake_conn_ops = {.on_state = intake_state};
