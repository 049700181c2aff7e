/*
 * Call-event parsing and per-target rendering (see event.h). Every target's body is built with
 * jansson from the stored payload, so what a target receives follows SPEC §6.1 member by member.
 * The stored payload itself is written by hand around one dump of `raw`: it is made for every
 * accepted event, on an HTTP thread, and its members are plain strings.
 */
#include "dispatch/event.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/buf.h"
#include "util/phone.h"

static const char *opt_string(json_t *obj, const char *key, bool *bad)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_string(v))
        *bad = true;
    return json_string_value(v);
}

static const char *id_string(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s && *s && strlen(s) <= EVENT_MAX_ID ? s : NULL;
}

int call_event_parse(const char *body, size_t len, struct call_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(ev->root))
        goto invalid;
    bool bad = false;
    ev->token = id_string(ev->root, "token");
    ev->unique_id = id_string(ev->root, "uniqueId");
    ev->event_type = json_string_value(json_object_get(ev->root, "event_type"));
    ev->record_url = opt_string(ev->root, "record_url", &bad);
    ev->origin = opt_string(ev->root, "origin", &bad);
    if (!ev->token || !ev->unique_id || !ev->event_type || bad)
        goto invalid;
    if (strcmp(ev->event_type, "dial") != 0 && strcmp(ev->event_type, "hangup") != 0)
        goto invalid;
    ev->raw = json_object_get(ev->root, "raw");
    if (!ev->raw || json_is_null(ev->raw)) {
        ev->raw = json_object();
        json_object_set_new(ev->root, "raw", ev->raw);
    } else if (!json_is_object(ev->raw)) {
        goto invalid;
    }
    return 0;
invalid:
    call_event_free(ev);
    return -1;
}

void call_event_free(struct call_event *ev)
{
    json_decref(ev->root);
    memset(ev, 0, sizeof *ev);
}

/* `,"key":` then s as a JSON string, or null when s is NULL. */
static void append_member(struct buf *b, const char *key, const char *s)
{
    buf_append_str(b, key);
    buf_append_json_or_null(b, s);
}

char *call_event_payload_json(const struct call_event *ev, const char *name2)
{
    char *raw = json_dumps(ev->raw, JSON_COMPACT);
    if (!raw)
        return NULL;
    struct buf b;
    buf_init(&b, (size_t)1 << 40);
    buf_reserve(&b, strlen(raw) + 512);
    append_member(&b, "{\"token\":", ev->token);
    append_member(&b, ",\"uniqueId\":", ev->unique_id);
    append_member(&b, ",\"event_type\":", ev->event_type);
    buf_append_str(&b, ",\"raw\":");
    buf_append_str(&b, raw);
    append_member(&b, ",\"record_url\":", ev->record_url);
    append_member(&b, ",\"origin\":", ev->origin);
    append_member(&b, ",\"name2\":", name2 && *name2 ? name2 : NULL);
    buf_append(&b, "}", 1);
    free(raw);
    return buf_steal(&b, NULL);
}

/* A raw field as text: strings as they are, integers printed; "" otherwise. */
static void field_text(const json_t *raw, const char *key, char *out, size_t size)
{
    json_t *v = json_object_get(raw, key);
    if (json_is_string(v))
        snprintf(out, size, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, size, "%lld", (long long)json_integer_value(v));
    else
        out[0] = '\0';
}

/* CallType or CallStatus: a number or a numeric string; -1 otherwise. */
static long field_number(const json_t *raw, const char *key)
{
    json_t *v = json_object_get(raw, key);
    if (json_is_integer(v))
        return (long)json_integer_value(v);
    if (json_is_real(v))
        return (long)json_real_value(v);
    const char *s = json_string_value(v);
    if (!s || !*s)
        return -1;
    char *end;
    long n = strtol(s, &end, 10);
    return *end == '\0' ? n : -1;
}

/* The first member of raw.Extensions that `kind` accepts (phone_is_internal/_external). */
static const char *first_extension(const json_t *raw, bool (*kind)(const char *))
{
    json_t *exts = json_object_get(raw, "Extensions");
    size_t i;
    json_t *x;
    json_array_foreach(exts, i, x)
    {
        const char *s = json_string_value(x);
        if (s && kind(s))
            return s;
    }
    return NULL;
}

/* The first internal number among CallerIDNum, Extensions, ConnectedLineNum (SPEC §6.1: the
 * call's extension, and the InternalCode added for retailcrm). */
static const char *first_internal_party(const json_t *raw)
{
    const char *caller = json_string_value(json_object_get(raw, "CallerIDNum"));
    const char *connected = json_string_value(json_object_get(raw, "ConnectedLineNum"));
    if (caller && phone_is_internal(caller))
        return caller;
    const char *ext = first_extension(raw, phone_is_internal);
    if (ext)
        return ext;
    return connected && phone_is_internal(connected) ? connected : NULL;
}

void call_parties_of(const json_t *raw, struct call_parties *out)
{
    char phone[64], caller[64], connected[64];
    field_text(raw, "Phone", phone, sizeof phone);
    field_text(raw, "CallerIDNum", caller, sizeof caller);
    field_text(raw, "ConnectedLineNum", connected, sizeof connected);
    const char *first_nonempty = phone[0] ? phone : (caller[0] ? caller : connected);
    const char *chosen = first_nonempty;
    long type = field_number(raw, "CallType");
    if (type == 0 || type == 1) {
        out->direction = type == 0 ? "in" : "out";
    } else if (phone_is_internal(caller)) {
        const char *ext = first_extension(raw, phone_is_external);
        out->direction = "out";
        chosen = ext ? ext : (phone[0] ? phone : connected);
    } else if (phone_is_external(caller) && first_extension(raw, phone_is_internal)) {
        out->direction = "in";
        chosen = caller;
    } else {
        out->direction = "in";
    }
    phone_normalize(chosen, out->phone, sizeof out->phone);

    const char *ext = first_internal_party(raw);
    snprintf(out->extension, sizeof out->extension, "%s", ext ? ext : "");
}

static bool parse_time(const json_t *raw, const char *key, time_t *out)
{
    const char *s = json_string_value(json_object_get(raw, key));
    struct tm tm = {0};
    if (!s || !strptime(s, "%Y-%m-%d %H:%M:%S", &tm))
        return false;
    *out = timegm(&tm); /* both ends in one zone: only the difference matters */
    return true;
}

long call_duration(const json_t *raw)
{
    time_t start, end;
    if (!parse_time(raw, "StartTime", &start) || !parse_time(raw, "EndTime", &end))
        return 0;
    return end > start ? (long)(end - start) : 0;
}

/* §6.4: rewrites the external numbers of raw with the line's rule. */
static void apply_transform(json_t *raw, const char *rule)
{
    static const char *const keys[] = {"Phone", "CallerIDNum", "ConnectedLineNum"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = json_string_value(json_object_get(raw, keys[i]));
        char rewritten[PHONE_MAX];
        if (v && phone_is_external(v) && phone_transform(rule, v, rewritten, sizeof rewritten))
            json_object_set_new(raw, keys[i], json_string(rewritten));
    }
}

static json_t *render_retailcrm(json_t *payload, json_t *raw, bool synthetic_dial)
{
    const char *event_type = json_string_value(json_object_get(payload, "event_type"));
    const char *name2 = json_string_value(json_object_get(payload, "name2"));
    if (!synthetic_dial && strcmp(event_type, "hangup") == 0 &&
        !json_object_get(raw, "InternalCode")) {
        const char *code = first_internal_party(raw);
        if (code)
            json_object_set_new(raw, "InternalCode", json_string(code));
    }
    json_t *b = json_object();
    json_object_set_new(b, "token",
                        json_string(name2 && *name2
                                        ? name2
                                        : json_string_value(json_object_get(payload, "token"))));
    json_object_set(b, "uniqueId", json_object_get(payload, "uniqueId"));
    json_object_set_new(b, "event_type", json_string(synthetic_dial ? "dial" : event_type));
    json_object_set(b, "raw", raw);
    json_object_set(b, "record_url", json_object_get(payload, "record_url"));
    return b;
}

/* The members uon and ms bodies open with: enterprise_number, phone, extension (§6.1). */
static json_t *parties_body(const char *number, const json_t *raw, struct call_parties *p)
{
    call_parties_of(raw, p);
    json_t *b = json_object();
    json_object_set_new(b, "enterprise_number", json_string(number));
    json_object_set_new(b, "phone", json_string(p->phone));
    json_object_set_new(b, "extension", json_string(p->extension));
    return b;
}

static json_t *render_uon(const char *number, json_t *payload, json_t *raw, bool dial)
{
    struct call_parties p;
    json_t *b = parties_body(number, raw, &p);
    if (dial) {
        json_t *all = json_array();
        json_t *exts = json_object_get(raw, "Extensions");
        size_t i;
        json_t *x;
        json_array_foreach(exts, i, x)
        {
            const char *s = json_string_value(x);
            if (s && phone_is_internal(s))
                json_array_append_new(all, json_string(s));
        }
        json_object_set_new(b, "extensions_all", all);
        json_object_set_new(b, "direction", json_string(p.direction));
        return b;
    }
    json_object_set(b, "start", json_object_get(raw, "StartTime"));
    if (!json_object_get(b, "start"))
        json_object_set_new(b, "start", json_null());
    json_object_set_new(b, "duration", json_integer(call_duration(raw)));
    json_object_set_new(b, "direction", json_string(p.direction));
    json_object_set_new(b, "call_status",
                        json_string(field_number(raw, "CallStatus") == 2 ? "answered" : "missed"));
    json_object_set(b, "record_url", json_object_get(payload, "record_url"));
    return b;
}

static json_t *render_ms(const char *number, json_t *payload, json_t *raw, bool dial)
{
    struct call_parties p;
    json_t *b = parties_body(number, raw, &p);
    json_object_set_new(b, "direction", json_string(p.direction));
    json_object_set_new(b, "event_type", json_string(dial ? "dial" : "hangup"));
    json_object_set(b, "unique_id", json_object_get(payload, "uniqueId"));
    json_object_set(b, "raw", raw);
    if (!dial) {
        json_object_set(b, "record_url", json_object_get(payload, "record_url"));
        json_object_set(b, "origin", json_object_get(payload, "origin"));
    }
    return b;
}

int delivery_render(enum target_id target, const char *enterprise_number, json_t *payload,
                    bool synthetic_dial, const char *transform, struct delivery_body *out)
{
    out->path = NULL;
    out->json = NULL;
    const char *event_type = json_string_value(json_object_get(payload, "event_type"));
    json_t *raw_in = json_object_get(payload, "raw");
    if (!event_type || !json_is_object(raw_in) || !json_object_get(payload, "uniqueId"))
        return -1;
    const char *origin = json_string_value(json_object_get(payload, "origin"));
    bool download = origin && strcmp(origin, "download") == 0;
    bool dial = strcmp(event_type, "dial") == 0;
    json_t *raw = json_deep_copy(raw_in); /* rendering may add InternalCode or rewrite numbers */
    struct call_parties parties;
    call_parties_of(raw, &parties);
    if (transform && strcmp(parties.direction, "in") == 0) /* §6.4: incoming calls only */
        apply_transform(raw, transform);
    json_t *body = NULL;
    switch (target) {
    case TARGET_RETAILCRM:
        out->path = "/internal/retailcrm/call-event";
        body = render_retailcrm(payload, raw, synthetic_dial);
        break;
    case TARGET_UON:
        out->path = dial ? "/internal/uon/notify-incoming" : "/internal/uon/log-call";
        body = render_uon(enterprise_number, payload, raw, dial);
        break;
    case TARGET_MS:
        if (dial && download)
            break; /* a recovered call's dial is not news to MoySklad */
        out->path = dial ? "/internal/ms/incoming-call"
                         : (download ? "/internal/ms/recovery-call" : "/internal/ms/hangup-call");
        body = render_ms(enterprise_number, payload, raw, dial);
        break;
    default:
        break;
    }
    json_decref(raw);
    if (body) {
        out->json = json_dumps(body, JSON_COMPACT);
        json_decref(body);
    }
    return 0;
}
