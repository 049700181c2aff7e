/*
 * Building immutable cache entries from integrations_config text (see entry.h). jansson validates
 * the document and answers the enabled flags; the bytes that clients receive are slices of the
 * original text located by json_spans, so nothing is re-serialised.
 */
#include "cache/entry.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache/json_spans.h"
#include "targets.h"
#include "util/buf.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

bool integration_enabled(const void *value)
{
    const json_t *v = value;
    if (!v)
        return false;
    if (json_is_true(v))
        return true;
    if (json_is_number(v))
        return json_number_value(v) == 1.0;
    if (json_is_string(v))
        return strcasecmp(json_string_value(v), "true") == 0;
    return false;
}

static struct cache_entry *entry_alloc(const char *number, uint64_t seq)
{
    struct cache_entry *e = xcalloc(1, sizeof *e);
    atomic_init(&e->refs, 1);
    e->seq = seq;
    snprintf(e->number, sizeof e->number, "%s", number);
    snprintf(e->primary, sizeof e->primary, "retailcrm"); /* SPEC §7 default */
    return e;
}

struct cache_entry *entry_new_negative(const char *number, double mono_now, double ttl,
                                       uint64_t seq)
{
    struct cache_entry *e = entry_alloc(number, seq);
    e->negative = true;
    e->loaded_mono = mono_now;
    e->expires_mono = mono_now + ttl;
    return e;
}

struct cache_entry *entry_ref(struct cache_entry *e)
{
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return e;
}

void entry_unref(struct cache_entry *e)
{
    if (!e || atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(e->text);
    free(e->types);
    free(e->name2);
    free(e->secret);
    free(e);
}

static char *token_copy(const char *t)
{
    return t && *t && strlen(t) <= ENTRY_MAX_TOKEN ? xstrdup(t) : NULL;
}

void entry_set_tokens(struct cache_entry *e, const char *name2, const char *secret)
{
    free(e->name2);
    free(e->secret);
    e->name2 = token_copy(name2);
    e->secret = token_copy(secret);
}

bool entry_fresh(const struct cache_entry *e, double mono_now)
{
    return mono_now < e->expires_mono;
}

const struct entry_type *entry_find_type(const struct cache_entry *e, const char *type)
{
    for (size_t i = 0; i < e->ntypes; i++)
        if (strcmp(e->types[i].name, type) == 0)
            return &e->types[i];
    return NULL;
}

/* The pieces of one document that the views are built from. */
struct doc {
    const char *text;
    json_t *root;
    struct json_span *spans;
    int nspans;
};

/* Parses and locates members; on failure sets *why and returns -1 (the caller frees d). */
static int doc_parse(struct doc *d, const char *config, size_t len, const char **why)
{
    json_error_t jerr;
    d->text = config;
    d->root = json_loadb(config, len,
                         JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL | JSON_DECODE_ANY, &jerr);
    if (!d->root) {
        *why = "integrations_config is not valid JSON";
        return -1;
    }
    if (!json_is_object(d->root)) {
        *why = "integrations_config is not a JSON object";
        return -1;
    }
    int n = (int)json_object_size(d->root);
    d->spans = xcalloc((size_t)n + 1, sizeof *d->spans);
    d->nspans = json_object_spans(config, len, d->spans, n);
    if (d->nspans != n) {
        *why = "integrations_config could not be scanned";
        return -1;
    }
    /* jansson keeps document order; the scanner's keys must line up with it */
    int i = 0;
    const char *key;
    json_t *value;
    json_object_foreach(d->root, key, value)
    {
        const struct json_span *s = &d->spans[i++];
        if (!memchr(config + s->key_off, '\\', s->key_len) &&
            (strlen(key) != s->key_len || memcmp(key, config + s->key_off, s->key_len) != 0)) {
            *why = "integrations_config could not be scanned";
            return -1;
        }
    }
    return 0;
}

/* Appends both views to `b`, recording offsets in `e`. Returns 0 or -E2BIG. */
static int render_views(struct cache_entry *e, const struct doc *d, struct buf *b,
                        unsigned *problems)
{
    char iso[32];
    time_format_iso(e->created_at, iso, sizeof iso);
    int rc = buf_printf(b, "{\"enterprise_number\":\"%s\",\"integrations\":", e->number);
    e->integrations_off = b->len;
    rc |= buf_append(b, "{", 1);
    e->types = xcalloc((size_t)d->nspans + 1, sizeof *e->types);
    int i = 0, written = 0;
    const char *key;
    json_t *value;
    json_object_foreach(d->root, key, value)
    {
        const struct json_span *s = &d->spans[i++];
        if (!json_is_object(value)) {
            if (problems)
                (*problems)++;
            continue;
        }
        rc |= buf_printf(b, "%s\"%.*s\":", written++ ? "," : "", (int)s->key_len,
                         d->text + s->key_off);
        if (param_valid(PARAM_TYPE, key, strlen(key))) {
            struct entry_type *t = &e->types[e->ntypes++];
            snprintf(t->name, sizeof t->name, "%s", key);
            t->off = b->len;
            t->len = s->value_len;
        }
        rc |= buf_append(b, d->text + s->value_off, s->value_len);
    }
    rc |= buf_append(b, "}", 1);
    e->integrations_len = b->len - e->integrations_off;
    rc |= buf_printf(b, ",\"source\":\"cache\",\"cached_at\":\"%s\"}", iso);
    e->config_len = b->len;

    e->status_off = b->len;
    rc |= buf_append_str(b, "{\"integrations\":{");
    i = 0;
    written = 0;
    json_object_foreach(d->root, key, value)
    {
        const struct json_span *s = &d->spans[i++];
        if (!json_is_object(value))
            continue;
        bool on = integration_enabled(json_object_get(value, "enabled"));
        for (int t = 0; t < TARGET_COUNT; t++)
            if (on && strcmp(key, target_names[t]) == 0)
                e->enabled_targets |= 1u << t;
        if (strcmp(key, "smart") == 0) {
            const char *primary = json_string_value(json_object_get(value, "primary"));
            if (primary && param_valid(PARAM_TYPE, primary, strlen(primary)))
                snprintf(e->primary, sizeof e->primary, "%s", primary);
        }
        rc |= buf_printf(b, "%s\"%.*s\":%s", written++ ? "," : "", (int)s->key_len,
                         d->text + s->key_off, on ? "true" : "false");
    }
    rc |= buf_printf(b, "},\"created_at\":%.3f,\"expires_at\":%.3f,\"age_seconds\":", e->created_at,
                     e->created_at + (e->expires_mono - e->loaded_mono));
    e->status_len = b->len - e->status_off;
    return rc ? -1 : 0;
}

struct cache_entry *entry_build(const char *number, const char *config, size_t len, size_t max_len,
                                const struct entry_clock *clock, uint64_t seq, unsigned *problems,
                                const char **why)
{
    if (!param_valid(PARAM_ENTERPRISE, number, strlen(number))) {
        *why = "enterprise number is not 1-32 characters of [0-9A-Za-z_-]";
        return NULL;
    }
    if (len > max_len) {
        *why = "integrations_config is larger than --max-config-bytes";
        return NULL;
    }
    struct doc d = {0};
    struct cache_entry *e = NULL;
    if (doc_parse(&d, config, len, why) == 0) {
        e = entry_alloc(number, seq);
        e->known = true;
        e->loaded_mono = clock->mono_now;
        e->expires_mono = clock->mono_now + clock->ttl;
        e->created_at = clock->real_now;
        struct buf b;
        buf_init(&b, 4 * max_len + 4096);
        if (render_views(e, &d, &b, problems) != 0) {
            *why = "integrations_config is too large to render";
            buf_deinit(&b);
            entry_unref(e);
            e = NULL;
        } else {
            size_t text_len;
            e->text = buf_steal(&b, &text_len);
            e->text =
                xrealloc(e->text, text_len + 1); /* give back the growth slack: 100k entries */
        }
    }
    json_decref(d.root);
    free(d.spans);
    return e;
}
