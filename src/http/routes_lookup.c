/*
 * GET /customer-name|customer-profile|responsible-extension/{e}/{p} (SPEC §7). The primary CRM
 * and, for responsible-extension, the enterprise's own manager -> extension mapping come from the
 * cached config (loaded on a miss like any read). Nothing here answers 404: an enterprise that is
 * not served, or a failed look-up, answers nulls.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "http/handlers.h"
#include "lookup/lookup.h"
#include "util/phone.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

enum stage { STAGE_NEW, STAGE_LOADING, STAGE_ASKING };

struct lookup_ctx {
    enum stage stage;
    struct lookup_request lr;
    struct http_request *req;
};

static void ctx_free(void *arg)
{
    struct lookup_ctx *c = arg;
    free(c->lr.mapping);
    free(c->lr.body);
    free(c);
}

static void asked(struct lookup_request *r)
{
    http_resume(((struct lookup_ctx *)((char *)r - offsetof(struct lookup_ctx, lr)))->req);
}

/* manager id -> extension for the primary, as a JSON object text; NULL when there is none. */
static char *own_mapping(const struct cache_entry *e)
{
    const struct entry_type *t = entry_find_type(e, e->primary);
    if (!t)
        return NULL;
    json_t *cfg = json_loadb(e->text + t->off, t->len, JSON_DECODE_INT_AS_REAL, NULL);
    json_t *map = json_object();
    const char *key;
    json_t *v;
    if (strcmp(e->primary, "ms") == 0) { /* {"151": {"employee_id": "<id>"}}: inverted */
        json_object_foreach(json_object_get(cfg, "employee_mapping"), key, v)
        {
            const char *id = json_string_value(json_object_get(v, "employee_id"));
            if (id)
                json_object_set_new(map, id, json_string(key));
        }
    } else { /* {"<manager id>": "<extension>"} */
        json_object_foreach(json_object_get(cfg, "user_extensions"), key, v)
        {
            if (json_is_string(v))
                json_object_set(map, key, v);
        }
    }
    char *text = json_object_size(map) ? json_dumps(map, JSON_COMPACT) : NULL;
    json_decref(map);
    json_decref(cfg);
    return text;
}

/* The enterprise is known (e may be negative): ask its primary. Takes over e's reference. */
static void ask(struct app *app, struct http_request *req, struct http_reply *rep,
                struct lookup_ctx *c, struct cache_entry *e)
{
    if (e->negative) {
        entry_unref(e);
        reply_static(rep, 200, lookup_null_body(c->lr.kind));
        return;
    }
    snprintf(c->lr.primary, sizeof c->lr.primary, "%s", e->primary);
    if (c->lr.kind == LOOKUP_EXTENSION)
        c->lr.mapping = own_mapping(e);
    entry_unref(e);
    c->lr.done = asked;
    c->stage = STAGE_ASKING;
    if (!http_suspend(req)) {
        reply_error(rep, 503, "shutting down");
        return;
    }
    lookup_submit(app->lookup, &c->lr);
}

static void lookup_route(struct app *app, struct http_request *req, struct http_reply *rep,
                         enum lookup_kind kind)
{
    struct lookup_ctx *c = req->ctx;
    if (c && c->stage == STAGE_ASKING) {
        char *body = c->lr.body;
        c->lr.body = NULL;
        reply_owned(rep, 200, body, strlen(body));
        return;
    }
    if (c && c->stage == STAGE_LOADING) {
        struct cache_entry *e = req->op.entry;
        req->op.entry = NULL;
        if (!e) { /* the database is away and nothing is cached: no primary to ask */
            reply_static(rep, 200, lookup_null_body(kind));
            return;
        }
        ask(app, req, rep, c, e);
        return;
    }
    c = xcalloc(1, sizeof *c);
    c->req = req;
    req->ctx = c;
    req->ctx_free = ctx_free;
    c->lr.kind = kind;
    snprintf(c->lr.number, sizeof c->lr.number, "%s", req->params[0]);
    phone_normalize(req->params[1], c->lr.phone, sizeof c->lr.phone);
    const char *nocache = http_query(req, "nocache");
    c->lr.nocache = nocache && strcmp(nocache, "true") == 0;
    if (!c->lr.nocache) {
        char *cached = lookup_cached(app->lookup, kind, c->lr.number, c->lr.phone);
        if (cached) {
            STAT_INC(app->stats, lookup_hits);
            reply_owned(rep, 200, cached, strlen(cached));
            return;
        }
    }
    STAT_INC(app->stats, lookup_misses);
    c->stage = STAGE_LOADING; /* in case the read below has to load */
    struct cache_entry *e = http_read_entry(app, req, rep, c->lr.number, COUNT_NONE);
    if (e)
        ask(app, req, rep, c, e);
}

void handle_customer_name(struct app *app, struct http_request *req, struct http_reply *rep)
{
    lookup_route(app, req, rep, LOOKUP_NAME);
}

void handle_customer_profile(struct app *app, struct http_request *req, struct http_reply *rep)
{
    lookup_route(app, req, rep, LOOKUP_PROFILE);
}

void handle_responsible_extension(struct app *app, struct http_request *req, struct http_reply *rep)
{
    lookup_route(app, req, rep, LOOKUP_EXTENSION);
}
