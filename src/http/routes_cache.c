/*
 * SPEC §4 reads and the PUT: /integrations/{e}, /config/{e}, /config/{e}/{t}. A hit is answered
 * from the entry's pre-rendered bytes without copying them: the reply points into the entry and
 * holds a reference until the bytes are sent; only age_seconds (and, for one integration, a short
 * prefix) is formatted per request. A miss suspends the request and the I/O thread loads the
 * enterprise; the handler then answers from the loaded entry with source "database".
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/handlers.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

enum view { VIEW_STATUS, VIEW_CONFIG, VIEW_TYPE };

/* A reply's hold on an entry plus room for the per-request bytes. */
struct entry_hold {
    struct cache_entry *e;
    char scratch[192];
};

static void hold_release(void *arg)
{
    struct entry_hold *h = arg;
    entry_unref(h->e);
    free(h);
}

static struct entry_hold *hold_new(struct http_reply *rep, struct cache_entry *e)
{
    struct entry_hold *h = xmalloc(sizeof *h);
    h->e = e;
    rep->status = 200;
    rep->niov = 0;
    rep->release = hold_release;
    rep->release_arg = h;
    return h;
}

static void add_iov(struct http_reply *rep, const void *base, size_t len)
{
    rep->iov[rep->niov].base = base;
    rep->iov[rep->niov].len = len;
    rep->niov++;
}

static void not_found(struct http_reply *rep, enum view v, const char *number, const char *type)
{
    char detail[160];
    if (v == VIEW_STATUS)
        snprintf(detail, sizeof detail, "Enterprise not found");
    else if (v == VIEW_CONFIG)
        snprintf(detail, sizeof detail, "No integration configurations found for enterprise %s",
                 number);
    else
        snprintf(detail, sizeof detail, "Integration '%s' not configured for enterprise %s", type,
                 number);
    reply_error(rep, 404, detail);
}

/* Answers from entry e (taking over the caller's reference). */
static void render(struct http_reply *rep, struct cache_entry *e, enum view v, const char *type,
                   bool from_db)
{
    const struct entry_type *t = v == VIEW_TYPE ? entry_find_type(e, type) : NULL;
    if (e->negative || (v == VIEW_TYPE && !t)) {
        not_found(rep, v, e->number, type);
        entry_unref(e);
        return;
    }
    struct entry_hold *h = hold_new(rep, e);
    int n;
    switch (v) {
    case VIEW_STATUS:
        add_iov(rep, e->text + e->status_off, e->status_len);
        n = snprintf(h->scratch, sizeof h->scratch, "%.3f}", time_mono_now() - e->loaded_mono);
        add_iov(rep, h->scratch, (size_t)n);
        break;
    case VIEW_CONFIG:
        if (!from_db) {
            add_iov(rep, e->text, e->config_len);
            break;
        }
        add_iov(rep, e->text, e->integrations_off + e->integrations_len);
        char iso[32];
        time_format_iso(e->created_at, iso, sizeof iso);
        n = snprintf(h->scratch, sizeof h->scratch,
                     ",\"source\":\"database\",\"cached_at\":\"%s\"}", iso);
        add_iov(rep, h->scratch, (size_t)n);
        break;
    case VIEW_TYPE:
        n = snprintf(h->scratch, sizeof h->scratch,
                     "{\"enterprise_number\":\"%s\",\"integration_type\":\"%s\",\"config\":",
                     e->number, t->name);
        add_iov(rep, h->scratch, (size_t)n);
        add_iov(rep, e->text + t->off, t->len);
        const char *tail = from_db ? ",\"source\":\"database\"}" : ",\"source\":\"cache\"}";
        add_iov(rep, tail, strlen(tail));
        break;
    }
}

/* The shared read path of the three views. */
static void read_view(struct app *app, struct http_request *req, struct http_reply *rep,
                      enum view v)
{
    const char *number = req->params[0];
    const char *type = v == VIEW_TYPE ? req->params[1] : NULL;
    if (req->resumed) {
        struct cache_entry *e = req->op.entry;
        req->op.entry = NULL;
        if (req->op.status == 503 || !e) {
            entry_unref(e);
            reply_error(rep, 503, req->op.error[0] ? req->op.error : "database unavailable");
            return;
        }
        render(rep, e, v, type, !req->op.stale);
        return;
    }
    bool status_view = v == VIEW_STATUS;
    struct cache_entry *e = cache_get_ref(app->store, number);
    if (e && entry_fresh(e, time_mono_now())) {
        if (status_view)
            STAT_INC(app->stats, hits);
        else
            STAT_INC(app->stats, config_hits);
        render(rep, e, v, type, false);
        return;
    }
    entry_unref(e);
    if (status_view)
        STAT_INC(app->stats, misses);
    else
        STAT_INC(app->stats, config_misses);
    snprintf(req->op.number, sizeof req->op.number, "%s", number);
    http_defer(app, req, rep, LOADER_LOAD);
}

void handle_integrations(struct app *app, struct http_request *req, struct http_reply *rep)
{
    read_view(app, req, rep, VIEW_STATUS);
}

void handle_config(struct app *app, struct http_request *req, struct http_reply *rep)
{
    read_view(app, req, rep, VIEW_CONFIG);
}

void handle_config_type(struct app *app, struct http_request *req, struct http_reply *rep)
{
    read_view(app, req, rep, VIEW_TYPE);
}

void handle_put_config(struct app *app, struct http_request *req, struct http_reply *rep)
{
    if (req->resumed) {
        if (req->op.status != 200) {
            reply_error(rep, req->op.status, req->op.error);
            return;
        }
        struct buf b;
        buf_init(&b, 1024);
        buf_printf(&b,
                   "{\"status\":\"success\",\"message\":\"%s configuration updated\","
                   "\"enterprise_number\":\"%s\"}",
                   req->params[1], req->params[0]);
        reply_buf(rep, 200, &b);
        return;
    }
    json_t *body = req->body.len
                       ? json_loadb(req->body.data, req->body.len,
                                    JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, NULL)
                       : NULL;
    bool ok = json_is_object(body);
    json_decref(body);
    if (!ok) {
        reply_error(rep, 400, "body must be a JSON object");
        return;
    }
    snprintf(req->op.number, sizeof req->op.number, "%s", req->params[0]);
    snprintf(req->op.type, sizeof req->op.type, "%s", req->params[1]);
    req->op.body = req->body.data;
    http_defer(app, req, rep, LOADER_PUT_CONFIG);
}
