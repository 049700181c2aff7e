/* Cache administration (SPEC §4): invalidate one enterprise, refresh everything, list entries. */
#include <stdio.h>

#include "http/handlers.h"
#include "util/timeutil.h"

void handle_invalidate(struct app *app, struct http_request *req, struct http_reply *rep)
{
    if (!req->resumed) {
        snprintf(req->op.number, sizeof req->op.number, "%s", req->params[0]);
        http_defer(app, req, rep, LOADER_INVALIDATE);
        return;
    }
    struct buf b;
    buf_init(&b, 1024);
    buf_printf(&b, "{\"message\":\"Cache invalidated for enterprise %s\"}", req->params[0]);
    reply_buf(rep, 200, &b);
}

void handle_refresh(struct app *app, struct http_request *req, struct http_reply *rep)
{
    if (!req->resumed) {
        http_defer(app, req, rep, LOADER_REFRESH);
        return;
    }
    if (req->op.status != 200) {
        reply_error(rep, 503, req->op.error);
        return;
    }
    struct buf b;
    buf_init(&b, 1024);
    buf_printf(&b,
               "{\"message\":\"Cache refreshed successfully\",\"entries\":%zu,"
               "\"duration_ms\":%.1f}",
               req->op.entries, req->op.duration_ms);
    reply_buf(rep, 200, &b);
}

struct entries_ctx {
    struct buf *b;
    double now;
    int rc;
};

static void add_entry(const struct cache_entry *e, void *arg)
{
    struct entries_ctx *c = arg;
    c->rc |= buf_printf(c->b, "%s\"%s\":", c->b->len > 1 ? "," : "", e->number);
    c->rc |= buf_append(c->b, e->text + e->status_off, e->status_len);
    c->rc |= buf_printf(c->b, "%.3f}", c->now - e->loaded_mono);
}

void handle_entries(struct app *app, struct http_request *req, struct http_reply *rep)
{
    struct buf b;
    buf_init(&b, (size_t)1 << 31);
    buf_append(&b, "{", 1);
    struct entries_ctx c = {&b, time_mono_now(), 0};
    cache_foreach(app->store, add_entry, &c);
    c.rc |= buf_append(&b, "}", 1);
    if (c.rc) {
        buf_deinit(&b);
        reply_error(rep, 500, "cache listing too large");
        return;
    }
    reply_buf(rep, 200, &b);
}
