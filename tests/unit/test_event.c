/*
 * Unit tests for src/dispatch/event (SPEC §6, §6.1, §6.4): intake payload validation, direction,
 * phone and extension of a raw event, call duration, and every target's rendered body — parsed
 * back with jansson and compared member by member, path included, for each §6.1 rule.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "dispatch/event.h"

#define ENT "0367"
#define URL "https://rec.example/file.mp3"

/* --- call_event_parse --- */

/* Parses `body` from an exact-length copy with no NUL after it, as a request body arrives. */
static int parse(const char *body, struct call_event *ev)
{
    size_t len = strlen(body);
    char *copy = malloc(len ? len : 1);
    memcpy(copy, body, len);
    int rc = call_event_parse(copy, len, ev);
    free(copy);
    return rc;
}

static void test_parse_dial(void **state)
{
    (void)state;
    struct call_event ev;
    assert_int_equal(parse("{\"token\": \"375293332255\", \"uniqueId\": \"1758200248.0\", "
                           "\"event_type\": \"dial\", \"raw\": {\"Phone\": \"79001234567\"}}",
                           &ev),
                     0);
    assert_non_null(ev.root);
    assert_string_equal(ev.token, "375293332255");
    assert_string_equal(ev.unique_id, "1758200248.0");
    assert_string_equal(ev.event_type, "dial");
    assert_true(json_is_object(ev.raw));
    assert_string_equal(json_string_value(json_object_get(ev.raw, "Phone")), "79001234567");
    assert_null(ev.record_url);
    assert_null(ev.origin);
    call_event_free(&ev);
    assert_null(ev.root);
}

static void test_parse_hangup(void **state)
{
    (void)state;
    struct call_event ev;
    assert_int_equal(parse("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"hangup\", "
                           "\"raw\": {}, \"record_url\": \"" URL "\", \"origin\": \"download\"}",
                           &ev),
                     0);
    assert_string_equal(ev.event_type, "hangup");
    assert_string_equal(ev.record_url, URL);
    assert_string_equal(ev.origin, "download");
    assert_int_equal(json_object_size(ev.raw), 0);
    call_event_free(&ev);
}

static void test_parse_raw_missing(void **state)
{
    (void)state;
    struct call_event ev;
    assert_int_equal(
        parse("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"dial\"}", &ev), 0);
    assert_true(json_is_object(ev.raw));
    assert_int_equal(json_object_size(ev.raw), 0);
    call_event_free(&ev);
}

static void test_parse_optional_null(void **state)
{
    (void)state;
    struct call_event ev;
    assert_int_equal(parse("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"hangup\", "
                           "\"record_url\": null, \"origin\": null}",
                           &ev),
                     0);
    assert_null(ev.record_url);
    assert_null(ev.origin);
    call_event_free(&ev);
}

static void invalid(const char *body)
{
    struct call_event ev;
    if (parse(body, &ev) != -1)
        fail_msg("accepted: %s", body);
    assert_null(ev.root);
}

static void test_parse_invalid(void **state)
{
    (void)state;
    invalid("");
    invalid("not json");
    invalid("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"dial\""); /* cut short */
    invalid("[\"t\", \"u\", \"dial\"]");
    invalid("\"dial\"");
    invalid("null");
    invalid("{}");
    invalid("{\"uniqueId\": \"u\", \"event_type\": \"dial\"}");
    invalid("{\"token\": \"t\", \"event_type\": \"dial\"}");
    invalid("{\"token\": \"\", \"uniqueId\": \"u\", \"event_type\": \"dial\"}");
    invalid("{\"token\": \"t\", \"uniqueId\": \"\", \"event_type\": \"dial\"}");
    invalid("{\"token\": 375293332255, \"uniqueId\": \"u\", \"event_type\": \"dial\"}");
    invalid("{\"token\": \"t\", \"uniqueId\": 1758200248.0, \"event_type\": \"dial\"}");
    invalid("{\"token\": null, \"uniqueId\": \"u\", \"event_type\": \"dial\"}");
    invalid("{\"token\": \"t\", \"uniqueId\": \"u\"}");
    invalid("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"\"}");
    invalid("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"answer\"}");
    invalid("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"Dial\"}");
    invalid("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"dial \"}");
    invalid("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": 1}");
    invalid("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"dial\", \"raw\": []}");
    invalid("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"dial\", \"raw\": \"{}\"}");
    invalid("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"dial\", \"raw\": 1}");
    invalid("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"hangup\", "
            "\"record_url\": 5}");
    invalid("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"hangup\", "
            "\"record_url\": {}}");
    invalid(
        "{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"hangup\", \"origin\": true}");
    invalid("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"hangup\", \"origin\": []}");
}

static void test_parse_id_length(void **state)
{
    (void)state;
    char id[EVENT_MAX_ID + 2];
    char body[512];
    struct call_event ev;

    memset(id, '7', EVENT_MAX_ID);
    id[EVENT_MAX_ID] = '\0'; /* exactly the maximum: fine */
    snprintf(body, sizeof body,
             "{\"token\": \"%s\", \"uniqueId\": \"%s\", \"event_type\": \"dial\"}", id, id);
    assert_int_equal(parse(body, &ev), 0);
    assert_int_equal(strlen(ev.token), EVENT_MAX_ID);
    assert_int_equal(strlen(ev.unique_id), EVENT_MAX_ID);
    call_event_free(&ev);

    memset(id, '7', EVENT_MAX_ID + 1);
    id[EVENT_MAX_ID + 1] = '\0'; /* one byte more */
    snprintf(body, sizeof body,
             "{\"token\": \"%s\", \"uniqueId\": \"u\", \"event_type\": \"dial\"}", id);
    invalid(body);
    snprintf(body, sizeof body,
             "{\"token\": \"t\", \"uniqueId\": \"%s\", \"event_type\": \"dial\"}", id);
    invalid(body);
}

/* --- call_event_payload_json --- */

/* The payload text of a parsed event, parsed back; a new reference. */
static json_t *payload_value(const struct call_event *ev, const char *name2)
{
    char *text = call_event_payload_json(ev, name2);
    assert_non_null(text);
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    if (!v)
        fail_msg("payload is not JSON: %s", text);
    free(text);
    return v;
}

static void test_payload(void **state)
{
    (void)state;
    struct call_event ev;
    assert_int_equal(parse("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"hangup\", "
                           "\"raw\": {\"Phone\": \"1\"}, \"record_url\": \"" URL "\"}",
                           &ev),
                     0);
    json_t *p = payload_value(&ev, "name-two");
    json_t *q = payload_value(&ev, "");
    json_t *r = payload_value(&ev, NULL);
    call_event_free(&ev);
    json_t *want = json_loads(
        "{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"hangup\", \"raw\": {\"Phone\": "
        "\"1\"}, \"record_url\": \"" URL "\", \"origin\": null, \"name2\": \"name-two\"}",
        0, NULL);
    assert_true(json_equal(p, want));
    json_object_set_new(want, "name2", json_null());
    assert_true(json_equal(q, want));
    assert_true(json_equal(r, want));
    json_decref(want);
    json_decref(p);
    json_decref(q);
    json_decref(r);
}

/* Members that need escaping come back as they were sent. */
static void test_payload_escapes(void **state)
{
    (void)state;
    struct call_event ev;
    const char *body = "{\"token\": \"t\\\"\\\\\", \"uniqueId\": \"u\\u0001\\n\\u00e9\u00e9\", "
                       "\"event_type\": \"dial\", \"raw\": {\"Phone\": \"\\\"x\"}, "
                       "\"origin\": \"download\"}";
    assert_int_equal(parse(body, &ev), 0);
    json_t *p = payload_value(&ev, "n\"2");
    call_event_free(&ev);
    assert_string_equal(json_string_value(json_object_get(p, "token")), "t\"\\");
    assert_string_equal(json_string_value(json_object_get(p, "uniqueId")), "u\001\n\u00e9\u00e9");
    assert_string_equal(json_string_value(json_object_get(json_object_get(p, "raw"), "Phone")),
                        "\"x");
    assert_string_equal(json_string_value(json_object_get(p, "origin")), "download");
    assert_string_equal(json_string_value(json_object_get(p, "name2")), "n\"2");
    assert_true(json_is_null(json_object_get(p, "record_url")));
    json_decref(p);
}

/* --- call_parties_of --- */

static void parties_are(const char *raw_text, const char *direction, const char *phone,
                        const char *extension)
{
    json_t *raw = json_loads(raw_text, 0, NULL);
    assert_non_null(raw);
    struct call_parties p;
    memset(&p, 0, sizeof p);
    call_parties_of(raw, &p);
    json_decref(raw);
    if (!p.direction || strcmp(p.direction, direction) != 0 || strcmp(p.phone, phone) != 0 ||
        strcmp(p.extension, extension) != 0)
        fail_msg("%s: got (%s, \"%s\", \"%s\"), want (%s, \"%s\", \"%s\")", raw_text,
                 p.direction ? p.direction : "NULL", p.phone, p.extension, direction, phone,
                 extension);
}

static void test_parties_call_type(void **state)
{
    (void)state;
    /* CallType decides, as a number or a numeric string */
    parties_are("{\"CallType\": 0, \"Phone\": \"79001234567\", \"CallerIDNum\": \"79001234567\", "
                "\"Extensions\": [\"151\"]}",
                "in", "+79001234567", "151");
    parties_are("{\"CallType\": \"0\", \"Phone\": \"79001234567\", \"Extensions\": [\"151\"]}",
                "in", "+79001234567", "151");
    parties_are("{\"CallType\": 1, \"Phone\": \"79001234567\", \"CallerIDNum\": \"151\"}", "out",
                "+79001234567", "151");
    parties_are("{\"CallType\": \"1\", \"Phone\": \"+79001234567\", \"CallerIDNum\": \"151\"}",
                "out", "+79001234567", "151");
    /* CallType 1 even though the caller looks external, and 0 though it looks internal */
    parties_are("{\"CallType\": 1, \"Phone\": \"79001234567\", \"CallerIDNum\": \"79001234567\"}",
                "out", "+79001234567", "");
    parties_are("{\"CallType\": 0, \"Phone\": \"79001234567\", \"CallerIDNum\": \"151\"}", "in",
                "+79001234567", "151");
}

static void test_parties_first_nonempty(void **state)
{
    (void)state;
    parties_are("{\"CallType\": 0, \"Phone\": \"\", \"CallerIDNum\": \"79001234567\", "
                "\"ConnectedLineNum\": \"79005550000\"}",
                "in", "+79001234567", "");
    parties_are("{\"CallType\": 0, \"CallerIDNum\": \"\", \"ConnectedLineNum\": \"375291234567\"}",
                "in", "+375291234567", "");
    parties_are("{\"CallType\": \"1\", \"Phone\": \"\", \"CallerIDNum\": \"\", "
                "\"ConnectedLineNum\": \"79005550000\"}",
                "out", "+79005550000", "");
}

static void test_parties_rules(void **state)
{
    (void)state;
    /* internal caller, an external number among Extensions: out, that number (before Phone) */
    parties_are("{\"CallType\": 2, \"CallerIDNum\": \"151\", \"Extensions\": [\"152\", "
                "\"79001234567\"], \"Phone\": \"74950000000\"}",
                "out", "+79001234567", "151");
    parties_are("{\"CallerIDNum\": \"151\", \"Extensions\": [\"79001234567\"]}", "out",
                "+79001234567", "151");
    /* internal caller, external Phone */
    parties_are("{\"CallerIDNum\": \"151\", \"Phone\": \"79001234567\", \"Extensions\": [\"152\"]}",
                "out", "+79001234567", "151");
    parties_are("{\"CallType\": \"2\", \"CallerIDNum\": \"151\", \"Phone\": \"+79001234567\"}",
                "out", "+79001234567", "151");
    /* internal caller alone: out, Phone or ConnectedLineNum */
    parties_are("{\"CallerIDNum\": \"151\", \"ConnectedLineNum\": \"79001234567\"}", "out",
                "+79001234567", "151");
    parties_are("{\"CallerIDNum\": \"151\", \"Phone\": \"152\"}", "out", "+152", "151");
    parties_are("{\"CallerIDNum\": \"151\", \"Phone\": \"\", \"ConnectedLineNum\": \"152\"}", "out",
                "+152", "151");
    /* external caller with an internal extension: in, the caller */
    parties_are("{\"CallerIDNum\": \"79001234567\", \"Extensions\": [\"79005550000\", \"151\", "
                "\"152\"], \"Phone\": \"74950000000\"}",
                "in", "+79001234567", "151");
    parties_are("{\"CallType\": \"x\", \"CallerIDNum\": \"+79001234567\", \"Extensions\": "
                "[\"151\"]}",
                "in", "+79001234567", "151");
    /* else: in */
    parties_are("{\"CallerIDNum\": \"79001234567\"}", "in", "+79001234567", "");
    parties_are("{\"CallerIDNum\": \"79001234567\", \"Extensions\": [\"79005550000\"]}", "in",
                "+79001234567", "");
    parties_are("{}", "in", "", "");
}

static void test_parties_normalised(void **state)
{
    (void)state;
    parties_are("{\"CallType\": 0, \"Phone\": \"+375291234567\"}", "in", "+375291234567", "");
    parties_are("{\"CallType\": 0, \"Phone\": \"8 (900) 123\"}", "in", "8 (900) 123", "");
    parties_are("{\"CallType\": 0, \"Phone\": \"anonymous\"}", "in", "anonymous", "");
}

static void test_parties_extension(void **state)
{
    (void)state;
    /* the first internal number among CallerIDNum, Extensions, ConnectedLineNum */
    parties_are("{\"CallType\": 0, \"Phone\": \"79001234567\", \"CallerIDNum\": \"150\", "
                "\"Extensions\": [\"151\"], \"ConnectedLineNum\": \"152\"}",
                "in", "+79001234567", "150");
    parties_are("{\"CallType\": 0, \"Phone\": \"79001234567\", \"CallerIDNum\": \"79001234567\", "
                "\"Extensions\": [\"79005550000\", \"ext12\", \"151\", \"152\"], "
                "\"ConnectedLineNum\": \"153\"}",
                "in", "+79001234567", "151");
    parties_are("{\"CallType\": 0, \"Phone\": \"79001234567\", \"CallerIDNum\": \"79001234567\", "
                "\"Extensions\": [], \"ConnectedLineNum\": \"153\"}",
                "in", "+79001234567", "153");
    parties_are("{\"CallType\": 0, \"Phone\": \"79001234567\", \"CallerIDNum\": \"79001234567\", "
                "\"ConnectedLineNum\": \"123456\"}",
                "in", "+79001234567", "");
}

/* --- call_duration --- */

static long duration_of(const char *raw_text)
{
    json_t *raw = json_loads(raw_text, 0, NULL);
    assert_non_null(raw);
    long d = call_duration(raw);
    json_decref(raw);
    return d;
}

static void test_duration(void **state)
{
    (void)state;
    assert_int_equal(duration_of("{\"StartTime\": \"2025-09-18 10:00:00\", "
                                 "\"EndTime\": \"2025-09-18 10:01:05\"}"),
                     65);
    assert_int_equal(duration_of("{\"StartTime\": \"2025-09-18 23:59:30\", "
                                 "\"EndTime\": \"2025-09-19 00:00:10\"}"),
                     40);
    assert_int_equal(duration_of("{\"StartTime\": \"2025-09-18 10:00:00\", "
                                 "\"EndTime\": \"2025-09-18 10:00:00\"}"),
                     0);
    assert_int_equal(duration_of("{\"StartTime\": \"2025-09-18 10:01:05\", "
                                 "\"EndTime\": \"2025-09-18 10:00:00\"}"),
                     0); /* negative */
    assert_int_equal(duration_of("{\"StartTime\": \"2025-09-18 10:00:00\"}"), 0);
    assert_int_equal(duration_of("{\"EndTime\": \"2025-09-18 10:00:00\"}"), 0);
    assert_int_equal(duration_of("{}"), 0);
    assert_int_equal(duration_of("{\"StartTime\": \"yesterday\", "
                                 "\"EndTime\": \"2025-09-18 10:00:00\"}"),
                     0);
    assert_int_equal(duration_of("{\"StartTime\": \"2025-09-18 10:00:00\", "
                                 "\"EndTime\": \"2025-09-18\"}"),
                     0);
    assert_int_equal(duration_of("{\"StartTime\": \"\", \"EndTime\": \"2025-09-18 10:00:00\"}"), 0);
    assert_int_equal(duration_of("{\"StartTime\": 1758189600, \"EndTime\": 1758189665}"), 0);
    assert_int_equal(duration_of("{\"StartTime\": null, \"EndTime\": \"2025-09-18 10:00:00\"}"), 0);
}

/* --- delivery_render --- */

/* The stored payload of a request body (as intake builds it); a new reference. */
static json_t *payload_of(const char *body, const char *name2)
{
    struct call_event ev;
    if (parse(body, &ev) != 0)
        fail_msg("test body rejected: %s", body);
    json_t *p = payload_value(&ev, name2);
    call_event_free(&ev);
    return p;
}

struct rendered {
    const char *path;
    json_t *body; /* NULL when nothing is sent */
};

static struct rendered render(enum target_id target, json_t *payload, bool synthetic_dial,
                              const char *transform)
{
    struct delivery_body out = {.path = "unset", .json = (char *)"unset"};
    assert_int_equal(delivery_render(target, ENT, payload, synthetic_dial, transform, &out), 0);
    struct rendered r = {.path = out.path};
    if (out.json) {
        json_error_t jerr;
        r.body = json_loads(out.json, JSON_REJECT_DUPLICATES, &jerr);
        if (!r.body)
            fail_msg("not JSON (%s): %s", jerr.text, out.json);
        free(out.json);
    }
    return r;
}

/* Renders and checks the path and the whole body against `want` (JSON text). */
static void renders_to(enum target_id target, json_t *payload, bool synthetic_dial,
                       const char *transform, const char *path, const char *want)
{
    struct rendered r = render(target, payload, synthetic_dial, transform);
    if (!r.path)
        fail_msg("%s: no path, want %s", target_names[target], path);
    assert_string_equal(r.path, path);
    assert_non_null(r.body);
    json_error_t jerr;
    json_t *w = json_loads(want, JSON_REJECT_DUPLICATES, &jerr);
    if (!w)
        fail_msg("expected text is not JSON (%s): %s", jerr.text, want);
    static char got[4096], exp[4096];
    char *g = json_dumps(r.body, JSON_COMPACT | JSON_SORT_KEYS);
    char *e = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS);
    snprintf(got, sizeof got, "%s", g);
    snprintf(exp, sizeof exp, "%s", e);
    free(g);
    free(e);
    bool same = json_equal(r.body, w);
    json_decref(w);
    json_decref(r.body); /* before a failing assert, which does not return */
    if (!same)
        fail_msg("%s %s:\n got  %s\n want %s", target_names[target], path, got, exp);
}

#define RAW_IN                                                                                     \
    "{\"UniqueId\": \"1758200248.0\", \"CallType\": 0, \"Phone\": \"79001234567\", "               \
    "\"CallerIDNum\": \"79001234567\", \"Extensions\": [\"151\", \"79005550000\", \"152\"], "      \
    "\"Trunk\": \"0001363\"}"
#define RAW_IN_HANGUP                                                                              \
    "{\"UniqueId\": \"1758200248.0\", \"CallType\": 0, \"Phone\": \"79001234567\", "               \
    "\"CallerIDNum\": \"79001234567\", \"Extensions\": [\"79005550000\", \"152\"], "               \
    "\"ConnectedLineNum\": \"153\", \"CallStatus\": 2, \"StartTime\": \"2025-09-18 10:00:00\", "   \
    "\"EndTime\": \"2025-09-18 10:01:05\", \"Trunk\": \"0001363\"}"

#define DIAL_BODY(raw)                                                                             \
    "{\"token\": \"375293332255\", \"uniqueId\": \"1758200248.0\", \"event_type\": \"dial\", "     \
    "\"raw\": " raw "}"
#define HANGUP_BODY(raw, extra)                                                                    \
    "{\"token\": \"375293332255\", \"uniqueId\": \"1758200248.0\", \"event_type\": \"hangup\", "   \
    "\"raw\": " raw extra "}"

static void test_render_retailcrm_dial(void **state)
{
    (void)state;
    json_t *p = payload_of(DIAL_BODY(RAW_IN), "june");
    renders_to(TARGET_RETAILCRM, p, false, NULL, "/internal/retailcrm/call-event",
               "{\"token\": \"june\", \"uniqueId\": \"1758200248.0\", \"event_type\": \"dial\", "
               "\"raw\": " RAW_IN ", \"record_url\": null}");
    json_decref(p);
}

static void test_render_retailcrm_token(void **state)
{
    (void)state;
    const char *want = "{\"token\": \"375293332255\", \"uniqueId\": \"1758200248.0\", "
                       "\"event_type\": \"dial\", \"raw\": " RAW_IN ", \"record_url\": null}";
    json_t *p = payload_of(DIAL_BODY(RAW_IN), NULL);
    renders_to(TARGET_RETAILCRM, p, false, NULL, "/internal/retailcrm/call-event", want);
    json_decref(p);
    p = payload_of(DIAL_BODY(RAW_IN), "");
    renders_to(TARGET_RETAILCRM, p, false, NULL, "/internal/retailcrm/call-event", want);
    json_decref(p);
}

/* A hangup's raw with InternalCode: what retailcrm receives for `raw`. */
static void retailcrm_hangup_raw_is(const char *raw, const char *want_raw)
{
    char body[2048], want[2048];
    snprintf(body, sizeof body,
             "{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"hangup\", \"raw\": %s, "
             "\"record_url\": \"" URL "\"}",
             raw);
    snprintf(want, sizeof want,
             "{\"token\": \"june\", \"uniqueId\": \"u\", \"event_type\": \"hangup\", \"raw\": %s, "
             "\"record_url\": \"" URL "\"}",
             want_raw);
    json_t *p = payload_of(body, "june");
    renders_to(TARGET_RETAILCRM, p, false, NULL, "/internal/retailcrm/call-event", want);
    json_decref(p);
}

static void test_render_retailcrm_internal_code(void **state)
{
    (void)state;
    /* added: the first internal number among CallerIDNum, Extensions, ConnectedLineNum */
    retailcrm_hangup_raw_is("{\"CallerIDNum\": \"150\", \"Extensions\": [\"151\"], "
                            "\"ConnectedLineNum\": \"152\"}",
                            "{\"CallerIDNum\": \"150\", \"Extensions\": [\"151\"], "
                            "\"ConnectedLineNum\": \"152\", \"InternalCode\": \"150\"}");
    retailcrm_hangup_raw_is("{\"CallerIDNum\": \"79001234567\", \"Extensions\": [\"79005550000\", "
                            "\"151\"], \"ConnectedLineNum\": \"152\"}",
                            "{\"CallerIDNum\": \"79001234567\", \"Extensions\": [\"79005550000\", "
                            "\"151\"], \"ConnectedLineNum\": \"152\", \"InternalCode\": \"151\"}");
    retailcrm_hangup_raw_is(
        "{\"CallerIDNum\": \"79001234567\", \"ConnectedLineNum\": \"152\"}",
        "{\"CallerIDNum\": \"79001234567\", \"ConnectedLineNum\": \"152\", \"InternalCode\": "
        "\"152\"}");
    /* none to be found: nothing added */
    retailcrm_hangup_raw_is("{\"CallerIDNum\": \"79001234567\", \"ConnectedLineNum\": \"\"}",
                            "{\"CallerIDNum\": \"79001234567\", \"ConnectedLineNum\": \"\"}");
    /* present: kept as it is */
    retailcrm_hangup_raw_is("{\"CallerIDNum\": \"150\", \"InternalCode\": \"777\"}",
                            "{\"CallerIDNum\": \"150\", \"InternalCode\": \"777\"}");
    retailcrm_hangup_raw_is("{\"CallerIDNum\": \"150\", \"InternalCode\": 777}",
                            "{\"CallerIDNum\": \"150\", \"InternalCode\": 777}");
}

static void test_render_retailcrm_dial_no_internal_code(void **state)
{
    (void)state;
    json_t *p = payload_of(DIAL_BODY("{\"CallerIDNum\": \"150\"}"), "june");
    renders_to(TARGET_RETAILCRM, p, false, NULL, "/internal/retailcrm/call-event",
               "{\"token\": \"june\", \"uniqueId\": \"1758200248.0\", \"event_type\": \"dial\", "
               "\"raw\": {\"CallerIDNum\": \"150\"}, \"record_url\": null}");
    json_decref(p);
}

static void test_render_retailcrm_synthetic_dial(void **state)
{
    (void)state;
    json_t *p = payload_of(HANGUP_BODY(RAW_IN_HANGUP, ", \"record_url\": \"" URL "\""), "june");
    renders_to(TARGET_RETAILCRM, p, true, NULL, "/internal/retailcrm/call-event",
               "{\"token\": \"june\", \"uniqueId\": \"1758200248.0\", \"event_type\": \"dial\", "
               "\"raw\": " RAW_IN_HANGUP ", \"record_url\": \"" URL "\"}");
    json_decref(p);
}

static void test_render_uon_dial(void **state)
{
    (void)state;
    json_t *p = payload_of(DIAL_BODY(RAW_IN), "june");
    renders_to(TARGET_UON, p, false, NULL, "/internal/uon/notify-incoming",
               "{\"enterprise_number\": \"" ENT "\", \"phone\": \"+79001234567\", \"extension\": "
               "\"151\", \"extensions_all\": [\"151\", \"152\"], \"direction\": \"in\"}");
    json_decref(p);
    p = payload_of(DIAL_BODY("{\"CallerIDNum\": \"151\", \"Phone\": \"79001234567\"}"), NULL);
    renders_to(TARGET_UON, p, false, NULL, "/internal/uon/notify-incoming",
               "{\"enterprise_number\": \"" ENT "\", \"phone\": \"+79001234567\", \"extension\": "
               "\"151\", \"extensions_all\": [], \"direction\": \"out\"}");
    json_decref(p);
}

static void test_render_uon_hangup(void **state)
{
    (void)state;
    json_t *p = payload_of(HANGUP_BODY(RAW_IN_HANGUP, ", \"record_url\": \"" URL "\""), "june");
    renders_to(TARGET_UON, p, false, NULL, "/internal/uon/log-call",
               "{\"enterprise_number\": \"" ENT "\", \"phone\": \"+79001234567\", \"extension\": "
               "\"152\", \"start\": \"2025-09-18 10:00:00\", \"duration\": 65, \"direction\": "
               "\"in\", \"call_status\": \"answered\", \"record_url\": \"" URL "\"}");
    json_decref(p);
}

/* What call_status a uon log-call carries for a CallStatus member (NULL: absent). */
static const char *uon_call_status(const char *call_status)
{
    static char status[16];
    char body[512];
    snprintf(body, sizeof body,
             "{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"hangup\", \"raw\": "
             "{\"CallType\": 1, \"Phone\": \"79001234567\"%s%s}}",
             call_status ? ", \"CallStatus\": " : "", call_status ? call_status : "");
    json_t *p = payload_of(body, NULL);
    struct rendered r = render(TARGET_UON, p, false, NULL);
    assert_string_equal(r.path, "/internal/uon/log-call");
    assert_true(json_is_null(json_object_get(r.body, "record_url")));
    assert_true(json_is_null(json_object_get(r.body, "start")));
    assert_int_equal(json_integer_value(json_object_get(r.body, "duration")), 0);
    assert_int_equal(json_object_size(r.body), 8);
    snprintf(status, sizeof status, "%s",
             json_string_value(json_object_get(r.body, "call_status")));
    json_decref(r.body);
    json_decref(p);
    return status;
}

static void test_render_uon_call_status(void **state)
{
    (void)state;
    assert_string_equal(uon_call_status("2"), "answered");
    assert_string_equal(uon_call_status("\"2\""), "answered");
    assert_string_equal(uon_call_status("0"), "missed");
    assert_string_equal(uon_call_status("3"), "missed");
    assert_string_equal(uon_call_status("\"3\""), "missed");
    assert_string_equal(uon_call_status("\"\""), "missed");
    assert_string_equal(uon_call_status("null"), "missed");
    assert_string_equal(uon_call_status(NULL), "missed");
}

static void test_render_ms_dial(void **state)
{
    (void)state;
    json_t *p = payload_of(DIAL_BODY(RAW_IN), "june");
    renders_to(TARGET_MS, p, false, NULL, "/internal/ms/incoming-call",
               "{\"enterprise_number\": \"" ENT "\", \"phone\": \"+79001234567\", \"extension\": "
               "\"151\", \"direction\": \"in\", \"event_type\": \"dial\", \"unique_id\": "
               "\"1758200248.0\", \"raw\": " RAW_IN "}");
    json_decref(p);
}

static void test_render_ms_dial_download(void **state)
{
    (void)state;
    json_t *p = payload_of("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"dial\", "
                           "\"raw\": " RAW_IN ", \"origin\": \"download\"}",
                           "june");
    struct rendered r = render(TARGET_MS, p, false, NULL);
    assert_null(r.path);
    assert_null(r.body);
    /* the other targets still get a download's dial */
    r = render(TARGET_RETAILCRM, p, false, NULL);
    assert_string_equal(r.path, "/internal/retailcrm/call-event");
    assert_non_null(r.body);
    json_decref(r.body);
    json_decref(p);
}

static void test_render_ms_hangup(void **state)
{
    (void)state;
    json_t *p = payload_of(HANGUP_BODY(RAW_IN_HANGUP, ", \"record_url\": \"" URL "\""), "june");
    renders_to(TARGET_MS, p, false, NULL, "/internal/ms/hangup-call",
               "{\"enterprise_number\": \"" ENT "\", \"phone\": \"+79001234567\", \"extension\": "
               "\"152\", \"direction\": \"in\", \"event_type\": \"hangup\", \"unique_id\": "
               "\"1758200248.0\", \"raw\": " RAW_IN_HANGUP ", \"record_url\": \"" URL "\", "
               "\"origin\": null}");
    json_decref(p);
}

static void test_render_ms_recovery(void **state)
{
    (void)state;
    json_t *p = payload_of(
        HANGUP_BODY(RAW_IN_HANGUP, ", \"record_url\": \"" URL "\", \"origin\": \"download\""),
        "june");
    renders_to(TARGET_MS, p, false, NULL, "/internal/ms/recovery-call",
               "{\"enterprise_number\": \"" ENT "\", \"phone\": \"+79001234567\", \"extension\": "
               "\"152\", \"direction\": \"in\", \"event_type\": \"hangup\", \"unique_id\": "
               "\"1758200248.0\", \"raw\": " RAW_IN_HANGUP ", \"record_url\": \"" URL "\", "
               "\"origin\": \"download\"}");
    json_decref(p);
}

#define RAW_BY                                                                                     \
    "{\"CallType\": 0, \"Phone\": \"80291234567\", \"CallerIDNum\": \"80291234567\", "             \
    "\"ConnectedLineNum\": \"151\", \"Extensions\": [\"151\"], \"Trunk\": \"0001363\"}"
#define RAW_BY_REWRITTEN                                                                           \
    "{\"CallType\": 0, \"Phone\": \"+375291234567\", \"CallerIDNum\": \"+375291234567\", "         \
    "\"ConnectedLineNum\": \"151\", \"Extensions\": [\"151\"], \"Trunk\": \"0001363\"}"

static void test_render_transform(void **state)
{
    (void)state;
    json_t *p = payload_of(DIAL_BODY(RAW_BY), "june");
    renders_to(TARGET_MS, p, false, "+375{9}", "/internal/ms/incoming-call",
               "{\"enterprise_number\": \"" ENT "\", \"phone\": \"+375291234567\", \"extension\": "
               "\"151\", \"direction\": \"in\", \"event_type\": \"dial\", \"unique_id\": "
               "\"1758200248.0\", \"raw\": " RAW_BY_REWRITTEN "}");
    renders_to(TARGET_RETAILCRM, p, false, "+375{9}", "/internal/retailcrm/call-event",
               "{\"token\": \"june\", \"uniqueId\": \"1758200248.0\", \"event_type\": \"dial\", "
               "\"raw\": " RAW_BY_REWRITTEN ", \"record_url\": null}");
    renders_to(TARGET_UON, p, false, "+375{9}", "/internal/uon/notify-incoming",
               "{\"enterprise_number\": \"" ENT "\", \"phone\": \"+375291234567\", \"extension\": "
               "\"151\", \"extensions_all\": [\"151\"], \"direction\": \"in\"}");
    /* no rule, or a malformed one: nothing rewritten */
    renders_to(TARGET_MS, p, false, NULL, "/internal/ms/incoming-call",
               "{\"enterprise_number\": \"" ENT "\", \"phone\": \"+80291234567\", \"extension\": "
               "\"151\", \"direction\": \"in\", \"event_type\": \"dial\", \"unique_id\": "
               "\"1758200248.0\", \"raw\": " RAW_BY "}");
    renders_to(TARGET_MS, p, false, "+375{x}", "/internal/ms/incoming-call",
               "{\"enterprise_number\": \"" ENT "\", \"phone\": \"+80291234567\", \"extension\": "
               "\"151\", \"direction\": \"in\", \"event_type\": \"dial\", \"unique_id\": "
               "\"1758200248.0\", \"raw\": " RAW_BY "}");
    json_decref(p);
}

/* Rendering works on a copy: the stored payload is the same afterwards, and so is a second
 * rendering. */
static void test_render_leaves_payload(void **state)
{
    (void)state;
    const char *bodies[] = {
        HANGUP_BODY(RAW_BY, ", \"record_url\": \"" URL "\""),
        HANGUP_BODY("{\"CallerIDNum\": \"80291234567\", \"ConnectedLineNum\": \"151\"}", ""),
        DIAL_BODY(RAW_BY),
    };
    for (size_t b = 0; b < sizeof bodies / sizeof bodies[0]; b++) {
        json_t *p = payload_of(bodies[b], "june");
        json_t *before = json_deep_copy(p);
        for (int t = 0; t < TARGET_COUNT; t++)
            for (int synthetic = 0; synthetic < 2; synthetic++) {
                struct delivery_body one, two;
                assert_int_equal(delivery_render(t, ENT, p, synthetic, "+375{9}", &one), 0);
                assert_true(json_equal(p, before));
                assert_int_equal(delivery_render(t, ENT, p, synthetic, "+375{9}", &two), 0);
                assert_true(json_equal(p, before));
                assert_non_null(one.json);
                assert_non_null(two.json);
                assert_string_equal(one.json, two.json);
                assert_string_equal(one.path, two.path);
                free(one.json);
                free(two.json);
            }
        json_decref(before);
        json_decref(p);
    }
}

static void malformed(const char *payload_text)
{
    json_t *p = json_loads(payload_text, 0, NULL);
    assert_non_null(p);
    for (int t = 0; t < TARGET_COUNT; t++) {
        struct delivery_body out = {.path = "unset", .json = (char *)"unset"};
        if (delivery_render(t, ENT, p, false, NULL, &out) != -1)
            fail_msg("%s rendered %s", target_names[t], payload_text);
        assert_null(out.path);
        assert_null(out.json);
    }
    json_decref(p);
}

static void test_render_malformed(void **state)
{
    (void)state;
    malformed("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"dial\"}");
    malformed("{\"token\": \"t\", \"uniqueId\": \"u\", \"raw\": {}}");
    malformed("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": \"dial\", \"raw\": []}");
    malformed("{\"token\": \"t\", \"uniqueId\": \"u\", \"event_type\": 1, \"raw\": {}}");
    malformed("{\"token\": \"t\", \"event_type\": \"dial\", \"raw\": {}}");
    malformed("{}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_dial),
        cmocka_unit_test(test_parse_hangup),
        cmocka_unit_test(test_parse_raw_missing),
        cmocka_unit_test(test_parse_optional_null),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_parse_id_length),
        cmocka_unit_test(test_payload),
        cmocka_unit_test(test_payload_escapes),
        cmocka_unit_test(test_parties_call_type),
        cmocka_unit_test(test_parties_first_nonempty),
        cmocka_unit_test(test_parties_rules),
        cmocka_unit_test(test_parties_normalised),
        cmocka_unit_test(test_parties_extension),
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_render_retailcrm_dial),
        cmocka_unit_test(test_render_retailcrm_token),
        cmocka_unit_test(test_render_retailcrm_internal_code),
        cmocka_unit_test(test_render_retailcrm_dial_no_internal_code),
        cmocka_unit_test(test_render_retailcrm_synthetic_dial),
        cmocka_unit_test(test_render_uon_dial),
        cmocka_unit_test(test_render_uon_hangup),
        cmocka_unit_test(test_render_uon_call_status),
        cmocka_unit_test(test_render_ms_dial),
        cmocka_unit_test(test_render_ms_dial_download),
        cmocka_unit_test(test_render_ms_hangup),
        cmocka_unit_test(test_render_ms_recovery),
        cmocka_unit_test(test_render_transform),
        cmocka_unit_test(test_render_leaves_payload),
        cmocka_unit_test(test_render_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
