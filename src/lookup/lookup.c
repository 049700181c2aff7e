/*
 * Look-up cache and downstream calls (see lookup.h). The cache is a chained hash table behind one
 * mutex: look-ups are far rarer than config reads, and a result is a short JSON body copied out
 * under the lock. Size is bounded; when full, expired results are dropped first and, failing
 * that, the new result is simply not kept.
 */
#include "lookup/lookup.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/container.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define BUCKETS 4096
#define MAX_RESULTS 100000

struct result {
    char *key; /* "kind|number|phone" */
    char *body;
    double expires;
    struct result *next;
};

/* One downstream call and the requests waiting for it. */
struct pending {
    struct upstream_req req;
    struct lookup *l;
    char key[128];
    enum lookup_kind kind;
    char number[PARAM_MAX_LEN + 1], primary[PARAM_MAX_LEN + 1];
    char *mapping;
    double deadline;
    int attempts;
    struct lookup_request *waiters;
    struct pending *next;
};

struct lookup {
    struct io_loop *loop;
    const struct settings *set;
    struct stats *stats;
    struct upstream *up;
    pthread_mutex_t lock;
    struct result *buckets[BUCKETS];
    size_t count;
    struct pending *pending; /* loop thread only */
};

static const char *const kind_names[] = {"name", "profile", "extension"};

static unsigned hash(const char *s)
{
    unsigned h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h % BUCKETS;
}

static void make_key(char *key, size_t size, enum lookup_kind kind, const char *number,
                     const char *phone)
{
    snprintf(key, size, "%s|%s|%s", kind_names[kind], number, phone);
}

struct lookup *lookup_new(struct io_loop *loop, const struct settings *set, struct stats *stats,
                          struct upstream *up)
{
    struct lookup *l = xcalloc(1, sizeof *l);
    l->loop = loop;
    l->set = set;
    l->stats = stats;
    l->up = up;
    pthread_mutex_init(&l->lock, NULL);
    return l;
}

static void free_result(struct result *r)
{
    free(r->key);
    free(r->body);
    free(r);
}

void lookup_free(struct lookup *l)
{
    if (!l)
        return;
    for (int i = 0; i < BUCKETS; i++) {
        while (l->buckets[i]) {
            struct result *r = l->buckets[i];
            l->buckets[i] = r->next;
            free_result(r);
        }
    }
    pthread_mutex_destroy(&l->lock);
    free(l);
}

char *lookup_cached(struct lookup *l, enum lookup_kind kind, const char *number, const char *phone)
{
    char key[128];
    make_key(key, sizeof key, kind, number, phone);
    double now = time_mono_now();
    char *body = NULL;
    pthread_mutex_lock(&l->lock);
    for (struct result *r = l->buckets[hash(key)]; r; r = r->next)
        if (strcmp(r->key, key) == 0 && now < r->expires)
            body = xstrdup(r->body);
    pthread_mutex_unlock(&l->lock);
    return body;
}

/* Drops expired results (or those of `number`, when given); the lock is held. */
static void prune(struct lookup *l, const char *number, double now)
{
    size_t nlen = number ? strlen(number) : 0;
    for (int i = 0; i < BUCKETS; i++) {
        for (struct result **p = &l->buckets[i]; *p;) {
            struct result *r = *p;
            const char *num = strchr(r->key, '|') + 1;
            bool drop =
                number ? strncmp(num, number, nlen) == 0 && num[nlen] == '|' : now >= r->expires;
            if (drop) {
                *p = r->next;
                free_result(r);
                l->count--;
            } else {
                p = &r->next;
            }
        }
    }
}

static void store(struct lookup *l, const char *key, const char *body)
{
    if (l->set->lookup_ttl <= 0)
        return;
    double now = time_mono_now();
    pthread_mutex_lock(&l->lock);
    unsigned h = hash(key);
    for (struct result **p = &l->buckets[h]; *p; p = &(*p)->next) {
        if (strcmp((*p)->key, key) == 0) { /* replace */
            struct result *old = *p;
            *p = old->next;
            free_result(old);
            l->count--;
            break;
        }
    }
    if (l->count >= MAX_RESULTS)
        prune(l, NULL, now);
    if (l->count < MAX_RESULTS) {
        struct result *r = xcalloc(1, sizeof *r);
        r->key = xstrdup(key);
        r->body = xstrdup(body);
        r->expires = now + l->set->lookup_ttl;
        r->next = l->buckets[h];
        l->buckets[h] = r;
        l->count++;
    }
    pthread_mutex_unlock(&l->lock);
}

void lookup_invalidate(struct lookup *l, const char *number)
{
    pthread_mutex_lock(&l->lock);
    prune(l, number, 0);
    pthread_mutex_unlock(&l->lock);
}

static void finish(struct pending *p, const char *body)
{
    struct lookup *l = p->l;
    for (struct pending **pp = &l->pending; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    struct lookup_request *w = p->waiters;
    while (w) {
        struct lookup_request *next = w->next;
        w->body = xstrdup(body);
        w->done(w);
        w = next;
    }
    free(p->req.url);
    free(p->mapping);
    free(p);
}

/* The downstream URL for a kind and primary (SPEC §7's table); NULL for an unknown primary. */
static char *downstream_url(const struct lookup *l, const struct pending *p, const char *phone)
{
    const char *base, *path;
    bool with_enterprise = true;
    if (strcmp(p->primary, "retailcrm") == 0) {
        base = l->set->retailcrm_url;
        path = p->kind == LOOKUP_EXTENSION ? "/internal/retailcrm/responsible-extension"
                                           : "/internal/retailcrm/customer-profile";
        with_enterprise = p->kind == LOOKUP_EXTENSION;
    } else if (strcmp(p->primary, "ms") == 0) {
        base = l->set->ms_url;
        path = p->kind == LOOKUP_NAME      ? "/internal/ms/customer-name"
               : p->kind == LOOKUP_PROFILE ? "/internal/ms/customer-debug"
                                           : "/internal/ms/responsible-extension";
    } else if (strcmp(p->primary, "uon") == 0) {
        base = l->set->uon_url;
        path = p->kind == LOOKUP_EXTENSION ? "/internal/uon/responsible-extension"
                                           : "/internal/uon/customer-by-phone";
        with_enterprise = p->kind != LOOKUP_EXTENSION;
    } else {
        return NULL;
    }
    char *escaped = curl_easy_escape(NULL, phone, 0);
    size_t n = strlen(base) + strlen(path) + strlen(escaped) + strlen(p->number) + 64;
    char *url = xmalloc(n);
    snprintf(url, n, "%s%s?phone=%s%s%s", base, path, escaped,
             with_enterprise ? "&enterprise_number=" : "", with_enterprise ? p->number : "");
    curl_free(escaped);
    return url;
}

static void attempt(struct pending *p);

static void on_answer(struct upstream_req *r, long status, const char *body, size_t len,
                      const char *error)
{
    struct pending *p = container_of(r, struct pending, req);
    struct lookup *l = p->l;
    if ((status >= 200 && status < 300) || status == 404) { /* an answer, "not found" included */
        char *shaped = status == 404 ? xstrdup(lookup_null_body(p->kind))
                                     : lookup_shape(p->kind, p->primary, body, len, p->mapping);
        store(l, p->key, shaped);
        finish(p, shaped);
        free(shaped);
        return;
    }
    double left = p->deadline - time_mono_now();
    if (p->attempts < 2 && left > 0.05) {
        attempt(p);
        return;
    }
    STAT_INC(l->stats, lookup_failures);
    log_warn("customer look-up failed: %s for enterprise %s via %s (%s)", kind_names[p->kind],
             p->number, p->primary, status ? "bad status" : (error ? error : "no answer"));
    finish(p, lookup_null_body(p->kind)); /* nulls, not kept */
}

static void attempt(struct pending *p)
{
    p->attempts++;
    p->req.method = "GET";
    p->req.timeout = p->deadline - time_mono_now();
    p->req.done = on_answer;
    upstream_send(p->l->up, &p->req);
}

static void run_request(struct io_loop *loop, struct io_task *task)
{
    struct lookup_request *r = (struct lookup_request *)task;
    struct lookup *l = r->owner;
    char key[128];
    make_key(key, sizeof key, r->kind, r->number, r->phone);
    r->next = NULL;
    for (struct pending *p = l->pending; p; p = p->next) {
        if (strcmp(p->key, key) == 0) { /* share the call already under way */
            r->next = p->waiters;
            p->waiters = r;
            return;
        }
    }
    struct pending *p = xcalloc(1, sizeof *p);
    p->l = l;
    snprintf(p->key, sizeof p->key, "%s", key);
    p->kind = r->kind;
    snprintf(p->number, sizeof p->number, "%s", r->number);
    snprintf(p->primary, sizeof p->primary, "%s", r->primary);
    p->mapping = r->mapping ? xstrdup(r->mapping) : NULL;
    p->waiters = r;
    p->next = l->pending;
    l->pending = p;
    p->req.url = downstream_url(l, p, r->phone);
    if (!p->req.url) { /* a primary we cannot ask: not found, and remembered like one */
        store(l, p->key, lookup_null_body(p->kind));
        finish(p, lookup_null_body(p->kind));
        return;
    }
    p->deadline = time_mono_now() + l->set->lookup_timeout;
    attempt(p);
}

void lookup_submit(struct lookup *l, struct lookup_request *r)
{
    r->owner = l;
    r->body = NULL;
    r->task.fn = run_request;
    io_post(l->loop, &r->task);
}
