/*
 * Building immutable cache entries from integrations_config text (see entry.h). One pass of
 * json_scan validates the document and locates its members and each integration's "enabled" and
 * "primary"; the bytes that clients receive are slices of the original text, so nothing is
 * re-serialised. An entry is one allocation (the struct, its types, its text), sized before the
 * views are written: a full refresh builds 100,000 of them and the reaper frees as many.
 */
#include "cache/entry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache/json_scan.h"
#include "targets.h"
#include "util/buf.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

bool integration_enabled(const char *value, size_t len)
{
    if (!value || len == 0)
        return false;
    if (value[0] == 't')
        return len == 4 && memcmp(value, "true", 4) == 0;
    if (value[0] == '"') {
        char text[8];
        return json_decode_string(value, len, true, text, sizeof text) &&
               strcasecmp(text, "true") == 0;
    }
    if (value[0] == '-' || (value[0] >= '0' && value[0] <= '9')) {
        char num[64];
        if (len >= sizeof num)
            return false; /* no number that long equals 1 in a config anyone wrote */
        memcpy(num, value, len);
        num[len] = '\0';
        return strtod(num, NULL) == 1.0;
    }
    return false;
}

struct entry_clock entry_clock_at(double real_now, double mono_now, double ttl)
{
    struct entry_clock c = {.real_now = real_now, .mono_now = mono_now, .ttl = ttl};
    time_format_iso(real_now, c.iso, sizeof c.iso);
    return c;
}

/* An entry with `extra` bytes after the struct for its types and text. */
static struct cache_entry *entry_alloc(const char *number, uint64_t seq, size_t extra)
{
    struct cache_entry *e = xmalloc(sizeof *e + extra);
    *e = (struct cache_entry){.seq = seq};
    atomic_init(&e->refs, 1);
    size_t n = strnlen(number, sizeof e->number - 1); /* validated by the callers: 1-32 bytes */
    memcpy(e->number, number, n);
    memcpy(e->primary, "retailcrm", sizeof "retailcrm"); /* SPEC §7 default */
    return e;
}

struct cache_entry *entry_new_negative(const char *number, double mono_now, double ttl,
                                       uint64_t seq)
{
    struct cache_entry *e = entry_alloc(number, seq, 0);
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

/* What json_scan looks for inside each integration (struct json_member.inner). */
static const char *const inner_names[] = {"enabled", "primary", NULL};
enum { INNER_ENABLED, INNER_PRIMARY };

/* The members of one document, located by json_scan. */
struct doc {
    const char *text;
    struct json_member *members;
    int n;
};

/* A member's key decoded into out (PARAM_MAX_LEN + 1 bytes); "" when it is no valid type name. */
static const char *member_name(const struct doc *d, const struct json_member *m, char *out)
{
    if (!json_decode_string(d->text + m->key_off, m->key_len, false, out, PARAM_MAX_LEN + 1) ||
        !param_valid(PARAM_TYPE, out, strlen(out)))
        out[0] = '\0';
    return out;
}

/* An integration's "enabled" rule (SPEC §2.1) and, for smart, its "primary". */
static bool member_enabled(const struct doc *d, const struct json_member *m)
{
    const struct json_slice *en = &m->inner[INNER_ENABLED];
    return en->len && integration_enabled(d->text + en->off, en->len);
}

static void note_primary(struct cache_entry *e, const struct doc *d, const struct json_member *m)
{
    const struct json_slice *p = &m->inner[INNER_PRIMARY];
    char primary[PARAM_MAX_LEN + 1];
    if (p->len && d->text[p->off] == '"' &&
        json_decode_string(d->text + p->off, p->len, true, primary, sizeof primary) &&
        param_valid(PARAM_TYPE, primary, strlen(primary)))
        snprintf(e->primary, sizeof e->primary, "%s", primary);
}

/* The most bytes render_views writes for d, its NUL included. Literal pieces: 74 bytes of the
 * config view and 77 of the status view, plus a timestamp of at most 31 bytes and two numbers of
 * at most 23; per integration: `,"key":value` in the config view and `,"key":false` in the status
 * view. */
#define TEXT_FIXED_BOUND (74 + 77 + 31 + 2 * 23 + 1)
static size_t text_bound(const struct doc *d, const char *number)
{
    size_t n = TEXT_FIXED_BOUND + strlen(number);
    for (int i = 0; i < d->n; i++)
        if (d->members[i].kind == JK_OBJECT)
            n += 2 * d->members[i].key_len + d->members[i].value_len + 13;
    return n;
}

/* Appends `"key":` of member m, after a comma unless it is the first written. */
static int member_key(struct buf *b, const struct doc *d, const struct json_member *m, int written)
{
    int rc = buf_append_str(b, written ? ",\"" : "\"");
    rc |= buf_append(b, d->text + m->key_off, m->key_len);
    return rc | buf_append_str(b, "\":");
}

/* Appends both views to `b`, recording offsets in `e` (whose `types` has room for every object
 * member). Returns 0, or -1 when text_bound was wrong (an append did not fit). */
static int render_views(struct cache_entry *e, const struct doc *d, struct buf *b, const char *iso,
                        unsigned *problems)
{
    /* literal pieces rather than buf_printf: this runs for every row of a full refresh */
    int rc = buf_append_str(b, "{\"enterprise_number\":\"");
    rc |= buf_append_str(b, e->number);
    rc |= buf_append_str(b, "\",\"integrations\":");
    e->integrations_off = b->len;
    rc |= buf_append(b, "{", 1);
    int written = 0;
    for (int i = 0; i < d->n; i++) {
        const struct json_member *m = &d->members[i];
        if (m->kind != JK_OBJECT) { /* not an integration (SPEC §2.1) */
            if (problems)
                (*problems)++;
            continue;
        }
        rc |= member_key(b, d, m, written++);
        char name[PARAM_MAX_LEN + 1];
        if (*member_name(d, m, name)) {
            struct entry_type *t = &e->types[e->ntypes++];
            memcpy(t->name, name, sizeof t->name);
            t->off = b->len;
            t->len = m->value_len;
        }
        rc |= buf_append(b, d->text + m->value_off, m->value_len);
    }
    rc |= buf_append(b, "}", 1);
    e->integrations_len = b->len - e->integrations_off;
    rc |= buf_append_str(b, ",\"source\":\"cache\",\"cached_at\":\"");
    rc |= buf_append_str(b, iso);
    rc |= buf_append_str(b, "\"}");
    e->config_len = b->len;

    e->status_off = b->len;
    rc |= buf_append_str(b, "{\"integrations\":{");
    written = 0;
    for (int i = 0; i < d->n; i++) {
        const struct json_member *m = &d->members[i];
        if (m->kind != JK_OBJECT)
            continue;
        bool on = member_enabled(d, m);
        char name[PARAM_MAX_LEN + 1];
        member_name(d, m, name);
        for (int t = 0; t < TARGET_COUNT; t++)
            if (on && strcmp(name, target_names[t]) == 0)
                e->enabled_targets |= 1u << t;
        if (strcmp(name, "smart") == 0)
            note_primary(e, d, m);
        rc |= member_key(b, d, m, written++);
        rc |= buf_append_str(b, on ? "true" : "false");
    }
    char num[24];
    rc |= buf_append_str(b, "},\"created_at\":");
    rc |= buf_append(b, num, time_format_seconds(e->created_at, num));
    rc |= buf_append_str(b, ",\"expires_at\":");
    rc |= buf_append(b, num,
                     time_format_seconds(e->created_at + (e->expires_mono - e->loaded_mono), num));
    rc |= buf_append_str(b, ",\"age_seconds\":");
    e->status_len = b->len - e->status_off;
    return rc ? -1 : 0;
}

/* Validates the document and locates its members into d->members (`room` of them; a larger
 * array is allocated when there are more, which the caller frees if it differs); on failure sets
 * *why. */
static int doc_parse(struct doc *d, const char *config, size_t len, int room, const char **why)
{
    d->text = config;
    int n = json_scan_object(config, len, inner_names, d->members, room);
    if (n > room) { /* more members: once more with room for all of them */
        d->members = xcalloc((size_t)n, sizeof *d->members);
        n = json_scan_object(config, len, inner_names, d->members, n);
    }
    if (n == JSON_SCAN_NOT_OBJECT) {
        *why = "integrations_config is not a JSON object";
        return -1;
    }
    if (n == JSON_SCAN_INVALID) {
        *why = "integrations_config is not valid JSON";
        return -1;
    }
    if (n == JSON_SCAN_DUPLICATE) {
        *why = "integrations_config has a duplicate key";
        return -1;
    }
    d->n = n;
    return 0;
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
    struct json_member room[32]; /* enough for every config seen so far */
    struct doc d = {.members = room};
    struct cache_entry *e = NULL;
    if (doc_parse(&d, config, len, 32, why) == 0) {
        size_t nobj = 0;
        for (int i = 0; i < d.n; i++)
            nobj += d.members[i].kind == JK_OBJECT;
        size_t bound = text_bound(&d, number);
        e = entry_alloc(number, seq, nobj * sizeof *e->types + bound);
        e->known = true;
        e->loaded_mono = clock->mono_now;
        e->expires_mono = clock->mono_now + clock->ttl;
        e->created_at = clock->real_now;
        e->types = (struct entry_type *)(e + 1); /* sizeof *e keeps the alignment */
        e->text = (char *)(e->types + nobj);
        struct buf b; /* the entry's own bytes: the bound is exact, nothing grows */
        buf_init_fixed(&b, e->text, bound);
        if (render_views(e, &d, &b, clock->iso, problems) != 0) {
            *why = "integrations_config is too large to render";
            entry_unref(e);
            e = NULL;
        }
    }
    if (d.members != room)
        free(d.members);
    return e;
}
