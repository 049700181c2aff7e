/*
 * POST /dispatch/call-event (SPEC §6). The token is resolved from the cache (name2 or secret
 * through the token index, else the enterprise number itself, loaded on a miss like any read);
 * an event is acknowledged only once it is durable, in the outbox or the spool. The request may
 * therefore suspend twice: for a cache miss, then for the commit. Duplicates are caught by the
 * dedup table before anything is recorded; an event that fails to record is taken back out of
 * it, so the caller's retry is not mistaken for a duplicate.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "dispatch/event.h"
#include "http/handlers.h"
#include "util/buf.h"
#include "util/container.h"
#include "util/hex.h"
#include "util/log.h"
#include "util/logsafe.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

enum stage { STAGE_NEW, STAGE_LOADING, STAGE_RECORDING };

struct dispatch_ctx {
    struct call_event ev;
    char number[PARAM_MAX_LEN + 1];
    bool by_number; /* the token was taken as an enterprise number */
    enum stage stage;
    struct dispatch_job job;
    struct http_request *req;
    char event_id[33];
    unsigned targets;
};

static void ctx_free(void *arg)
{
    struct dispatch_ctx *c = arg;
    call_event_free(&c->ev);
    free(c->job.rows);
    free(c);
}

/* 32 hex digits: the milliseconds since 1970 in the first 12, then 80 random bits (the layout of
 * a UUIDv7). Ids that grow with time land at the right edge of the outbox's unique index instead
 * of on a random page of it, which kept every insert touching a cold page. */
static void new_event_id(char *out)
{
    unsigned char raw[16];
    unsigned long long ms = (unsigned long long)(time_real_now() * 1000);
    for (int i = 5; i >= 0; i--, ms >>= 8)
        raw[i] = (unsigned char)(ms & 0xff);
    /* getrandom does not fail on Linux >= 3.17; if it did, a counter keeps the ids apart */
    if (getrandom(raw + 6, sizeof raw - 6, 0) != (ssize_t)(sizeof raw - 6)) {
        static _Atomic unsigned long long fallback;
        unsigned long long n = atomic_fetch_add(&fallback, 1) ^ (unsigned long long)(uintptr_t)out;
        memcpy(raw + 6, &n, sizeof n);
    }
    hex_encode(raw, sizeof raw, out);
}

static void reply_accepted(struct http_reply *rep, const struct dispatch_ctx *c)
{
    struct buf b;
    buf_init(&b, 1024);
    buf_printf(&b, "{\"success\":true,\"event_id\":\"%s\",\"targets\":[", c->event_id);
    int n = 0;
    for (int t = 0; t < TARGET_COUNT; t++)
        if (c->targets & (1u << t))
            buf_printf(&b, "%s\"%s\"", n++ ? "," : "", target_names[t]);
    buf_append_str(&b, "]}");
    reply_buf(rep, 200, &b);
}

static void job_done(struct dispatch_job *j)
{
    struct dispatch_ctx *c = container_of(j, struct dispatch_ctx, job);
    http_resume(c->req);
}

/* The accepted event as the object SQL_OUTBOX_INSERT reads (one outbox row per target). Written
 * by hand around the payload text: building and dumping a jansson copy of the rows was the
 * largest cost of an accepted event in the service (docs/PERFORMANCE-NOTES.md, section 7). The
 * event id is hex, the number and event type are validated, and the uniqueId is escaped. NULL
 * when memory ran out. */
static char *event_record(const struct dispatch_ctx *c, const struct cache_entry *e)
{
    char *payload = call_event_payload_json(&c->ev, e->name2);
    if (!payload)
        return NULL;
    char accepted[32];
    time_format_seconds(time_real_now(), accepted);
    struct buf b;
    buf_init(&b, (size_t)1 << 40);
    buf_reserve(&b, strlen(payload) + 256 + strlen(c->ev.unique_id) * 6);
    buf_append_str(&b, "{\"event_id\":\"");
    buf_append_str(&b, c->event_id);
    buf_append_str(&b, "\",\"enterprise_number\":");
    buf_append_json_string(&b, e->number, strlen(e->number));
    buf_append_str(&b, ",\"unique_id\":");
    buf_append_json_string(&b, c->ev.unique_id, strlen(c->ev.unique_id));
    buf_append_str(&b, ",\"event_type\":\"");
    buf_append_str(&b, c->ev.event_type);
    buf_append_str(&b, "\",\"targets\":[");
    for (int t = 0, n = 0; t < TARGET_COUNT; t++) {
        if (!(c->targets & (1u << t)))
            continue;
        buf_append_str(&b, n++ ? ",\"" : "\"");
        buf_append_str(&b, target_names[t]);
        buf_append(&b, "\"", 1);
    }
    buf_append_str(&b, "],\"payload\":");
    buf_append_str(&b, payload);
    buf_append_str(&b, ",\"accepted_at\":");
    buf_append_str(&b, accepted);
    buf_append(&b, "}", 1);
    free(payload);
    return buf_steal(&b, NULL);
}

/* The enterprise is known: dedup, then record. Takes over e's reference. */
static void accept_event(struct app *app, struct http_request *req, struct http_reply *rep,
                         struct dispatch_ctx *c, struct cache_entry *e)
{
    if (e->negative) {
        reply_error(rep, 404,
                    c->by_number && !e->known ? "enterprise not found by token"
                                              : "Enterprise not found");
        entry_unref(e);
        return;
    }
    if (dedup_check_and_add(app->dedup, c->ev.unique_id, c->ev.event_type, time_real_now())) {
        STAT_INC(app->stats, dispatch_duplicates);
        reply_static(rep, 200, "{\"status\":\"ignored\",\"reason\":\"duplicate\"}");
        entry_unref(e);
        return;
    }
    new_event_id(c->event_id);
    c->targets = e->enabled_targets;
    if (!c->targets) { /* nothing to deliver to: nothing to record */
        STAT_INC(app->stats, dispatch_accepted);
        reply_accepted(rep, c);
        entry_unref(e);
        return;
    }
    c->job.rows = event_record(c, e);
    if (!c->job.rows) {
        dedup_forget(app->dedup, c->ev.unique_id, c->ev.event_type);
        reply_error(rep, 503, "event could not be recorded durably");
        entry_unref(e);
        return;
    }
    unsigned key = 5381; /* one call, one commit lane: its dial and hangup stay in order */
    for (const char *p = c->ev.unique_id; *p; p++)
        key = key * 33 + (unsigned char)*p;
    c->job.lane_key = key;
    c->job.done = job_done;
    c->stage = STAGE_RECORDING;
    entry_unref(e);
    if (!http_suspend(req)) {
        dedup_forget(app->dedup, c->ev.unique_id, c->ev.event_type);
        reply_error(rep, 503, "shutting down");
        return;
    }
    dispatcher_submit(app->dispatcher, &c->job);
}

static void recorded(struct app *app, struct http_reply *rep, struct dispatch_ctx *c)
{
    if (c->job.status != 200) {
        dedup_forget(app->dedup, c->ev.unique_id, c->ev.event_type);
        reply_error(rep, 503, "event could not be recorded durably");
        return;
    }
    STAT_INC(app->stats, dispatch_accepted);
    char uid[72], targets[64] = "";
    for (int t = 0; t < TARGET_COUNT; t++)
        if (c->targets & (1u << t))
            snprintf(targets + strlen(targets), sizeof targets - strlen(targets), "%s%s",
                     targets[0] ? "," : "", target_names[t]);
    log_debug("dispatch accepted: event %s (uniqueId %s, %s) -> %s%s", c->event_id,
              log_safe(c->ev.unique_id, uid, sizeof uid), c->ev.event_type, targets,
              c->job.spooled ? " [spooled]" : "");
    reply_accepted(rep, c);
}

void handle_dispatch(struct app *app, struct http_request *req, struct http_reply *rep)
{
    struct dispatch_ctx *c = req->ctx;
    if (c && c->stage == STAGE_RECORDING) {
        recorded(app, rep, c);
        return;
    }
    if (c && c->stage == STAGE_LOADING) {
        struct cache_entry *e = req->op.entry;
        req->op.entry = NULL;
        if (!e) {
            reply_error(rep, 503, "database unavailable");
            return;
        }
        accept_event(app, req, rep, c, e);
        return;
    }
    c = xcalloc(1, sizeof *c);
    c->req = req;
    req->ctx = c;
    req->ctx_free = ctx_free;
    if (call_event_parse(req->body.data ? req->body.data : "", req->body.len, &c->ev) != 0) {
        reply_error(rep, 400, "invalid payload");
        return;
    }
    if (!dispatcher_ready(app->dispatcher)) { /* the first moments after a start */
        reply_error(rep, 503, "starting up: duplicate detection is loading, retry");
        return;
    }
    if (!cache_resolve_token(app->store, c->ev.token, c->number)) {
        if (!param_valid(PARAM_ENTERPRISE, c->ev.token, strlen(c->ev.token))) {
            reply_error(rep, 404, "enterprise not found by token");
            return;
        }
        snprintf(c->number, sizeof c->number, "%s", c->ev.token);
        c->by_number = true;
    }
    c->stage = STAGE_LOADING; /* in case the read below has to load */
    struct cache_entry *e = http_read_entry(app, req, rep, c->number, COUNT_STATUS);
    if (e)
        accept_event(app, req, rep, c, e);
}
