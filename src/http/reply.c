/* Reply helpers and suspension glue (see request.h). */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "http/request.h"
#include "util/container.h"
#include "util/timeutil.h"

void reply_static(struct http_reply *r, int status, const char *body)
{
    r->status = status;
    r->iov[0].base = body;
    r->iov[0].len = strlen(body);
    r->niov = 1;
    r->release = NULL;
}

void reply_owned(struct http_reply *r, int status, char *body, size_t len)
{
    r->status = status;
    r->iov[0].base = body;
    r->iov[0].len = len;
    r->niov = 1;
    r->release = free;
    r->release_arg = body;
}

void reply_buf(struct http_reply *r, int status, struct buf *b)
{
    size_t len;
    char *data = buf_steal(b, &len);
    reply_owned(r, status, data, len);
}

void reply_out(struct http_reply *r, int status, const struct http_request *req)
{
    r->status = status;
    r->iov[0].base = req->out->data ? req->out->data : "";
    r->iov[0].len = req->out->len;
    r->niov = 1;
    r->release = NULL; /* the connection keeps the buffer until the answer is sent */
}

void reply_error(struct http_reply *r, int status, const char *detail)
{
    struct buf b;
    buf_init(&b, 4096);
    buf_append_str(&b, "{\"detail\":");
    buf_append_json_string(&b, detail, strlen(detail));
    buf_append_str(&b, "}");
    reply_buf(r, status, &b);
}

static void resume_when_done(struct loader_request *r)
{
    http_resume(container_of(r, struct http_request, op));
}

void http_defer(struct app *app, struct http_request *req, struct http_reply *rep,
                enum loader_op op)
{
    req->op.op = op;
    req->op.done = resume_when_done;
    if (!http_suspend(req)) {
        reply_error(rep, 503, "shutting down");
        return;
    }
    loader_submit(app->loader, &req->op);
}

struct cache_entry *http_read_entry(struct app *app, struct http_request *req,
                                    struct http_reply *rep, const char *number,
                                    enum read_count count)
{
    struct cache_entry *e = cache_get_ref(app->store, number);
    bool hit = e && entry_fresh(e, time_mono_now());
    atomic_ulong *counter = NULL;
    if (count == COUNT_STATUS)
        counter = hit ? &app->stats->hits : &app->stats->misses;
    else if (count == COUNT_CONFIG)
        counter = hit ? &app->stats->config_hits : &app->stats->config_misses;
    if (counter)
        atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
    if (hit)
        return e;
    entry_unref(e);
    snprintf(req->op.number, sizeof req->op.number, "%s", number);
    http_defer(app, req, rep, LOADER_LOAD);
    return NULL;
}
