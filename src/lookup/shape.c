/*
 * What each primary CRM answers and what we answer (SPEC §7's table), as pure functions over
 * the downstream JSON, so every column of the table is unit-testable.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "lookup/lookup.h"
#include "util/buf.h"
#include "util/xalloc.h"

const char *lookup_null_body(enum lookup_kind kind)
{
    switch (kind) {
    case LOOKUP_NAME:
        return "{\"name\":null}";
    case LOOKUP_PROFILE:
        return "{\"last_name\":null,\"first_name\":null,\"middle_name\":null,"
               "\"enterprise_name\":null}";
    default:
        return "{\"extension\":null}";
    }
}

/* A non-empty string member, or NULL. */
static const char *text(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s && *s ? s : NULL;
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *profile(const char *last, const char *first, const char *middle, const char *ent)
{
    return json_pack("{s:o,s:o,s:o,s:o}", "last_name", str_or_null(last), "first_name",
                     str_or_null(first), "middle_name", str_or_null(middle), "enterprise_name",
                     str_or_null(ent));
}

/* "last first middle" from the non-empty parts; NULL when all are empty. */
static char *full_name(json_t *d)
{
    const char *parts[] = {text(d, "last_name"), text(d, "first_name"), text(d, "middle_name")};
    struct buf b;
    buf_init(&b, 4096);
    for (int i = 0; i < 3; i++)
        if (parts[i])
            buf_printf(&b, "%s%s", b.len ? " " : "", parts[i]);
    if (b.len == 0) {
        buf_deinit(&b);
        return NULL;
    }
    return buf_steal(&b, NULL);
}

static json_t *shape_name(const char *primary, json_t *d)
{
    if (strcmp(primary, "retailcrm") == 0) {
        if (text(d, "enterprise_name"))
            return json_pack("{s:s}", "name", text(d, "enterprise_name"));
        char *name = full_name(d);
        json_t *r = json_pack("{s:o}", "name", str_or_null(name));
        free(name);
        return r;
    }
    if (strcmp(primary, "ms") == 0)
        return json_pack("{s:o}", "name", str_or_null(text(d, "name")));
    return json_pack("{s:o}", "name",
                     str_or_null(text(json_object_get(d, "profile"), "display_name")));
}

static json_t *shape_profile(const char *primary, json_t *d)
{
    if (strcmp(primary, "retailcrm") == 0)
        return profile(text(d, "last_name"), text(d, "first_name"), text(d, "middle_name"),
                       text(d, "enterprise_name"));
    if (strcmp(primary, "ms") == 0) {
        const char *name = text(json_object_get(d, "counterparty"), "name");
        return profile(name, NULL, NULL, name);
    }
    const char *display = text(json_object_get(d, "profile"), "display_name");
    if (!display)
        display = text(d, "display_name");
    if (!display)
        return profile(NULL, NULL, NULL, NULL);
    /* "Last First ...": the first word is the last name, the rest (blanks trimmed) the first */
    char *copy = xstrdup(display);
    char *last = copy + strspn(copy, " ");
    char *rest = last + strcspn(last, " ");
    if (*rest)
        *rest++ = '\0';
    rest += strspn(rest, " ");
    for (size_t n = strlen(rest); n > 0 && rest[n - 1] == ' '; n--)
        rest[n - 1] = '\0';
    json_t *r = profile(*last ? last : NULL, *rest ? rest : NULL, NULL, NULL);
    free(copy);
    return r;
}

static bool all_digits(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static json_t *shape_extension(json_t *d, const char *mapping)
{
    json_t *map = mapping ? json_loads(mapping, 0, NULL) : NULL;
    json_t *manager = json_object_get(d, "manager_id");
    char id[64] = "";
    if (json_is_string(manager))
        snprintf(id, sizeof id, "%s", json_string_value(manager));
    else if (json_is_integer(manager))
        snprintf(id, sizeof id, "%lld", (long long)json_integer_value(manager));
    const char *ext = id[0] ? json_string_value(json_object_get(map, id)) : NULL;
    if (!all_digits(ext)) /* the enterprise's own mapping wins; else what the CRM said */
        ext = json_string_value(json_object_get(d, "extension"));
    json_t *r = json_pack("{s:o}", "extension", str_or_null(all_digits(ext) ? ext : NULL));
    json_decref(map);
    return r;
}

char *lookup_shape(enum lookup_kind kind, const char *primary, const char *downstream, size_t len,
                   const char *mapping)
{
    json_t *d = json_loadb(downstream, len, 0, NULL);
    if (!json_is_object(d)) {
        json_decref(d);
        return xstrdup(lookup_null_body(kind));
    }
    json_t *r = kind == LOOKUP_NAME      ? shape_name(primary, d)
                : kind == LOOKUP_PROFILE ? shape_profile(primary, d)
                                         : shape_extension(d, mapping);
    char *body = json_dumps(r, JSON_COMPACT);
    json_decref(r);
    json_decref(d);
    return body;
}
