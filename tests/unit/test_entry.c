/*
 * Unit tests for src/cache/entry: the integration_enabled rule of SPEC §2.1, entry_build's two
 * pre-rendered views (status and config), per-type slices, byte-for-byte preservation, rejection of
 * unusable configs without leaking their content, negative entries, freshness and references.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <jansson.h>

#include "cache/entry.h"

#define MAX_LEN (1 << 20)

static struct entry_clock clk; /* set by use_utc, once TZ is UTC */

static int use_utc(void **state)
{
    (void)state;
    setenv("TZ", "UTC", 1);
    tzset();
    clk = entry_clock_at(1757159026.198319, 1000.0, 90.0);
    return 0;
}

static struct cache_entry *build(const char *number, const char *config, unsigned *problems,
                                 const char **why)
{
    *why = NULL;
    return entry_build(number, config, strlen(config), MAX_LEN, &clk, 7, problems, why);
}

/* The status view as a NUL-terminated copy (caller frees). */
static char *status_view(const struct cache_entry *e)
{
    char *s = malloc(e->status_len + 1);
    memcpy(s, e->text + e->status_off, e->status_len);
    s[e->status_len] = '\0';
    return s;
}

static json_t *load(const char *text, size_t len)
{
    json_error_t jerr;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &jerr);
    if (!j)
        fail_msg("not JSON (%s): %.*s", jerr.text, (int)len, text);
    return j;
}

/* The rule works on the member's JSON text: render v as PostgreSQL would store it. */
static bool enabled(json_t *v)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    bool r = integration_enabled(text, strlen(text));
    free(text);
    json_decref(v);
    return r;
}

static void test_integration_enabled(void **state)
{
    (void)state;
    assert_true(enabled(json_true()));
    assert_true(enabled(json_integer(1)));
    assert_true(enabled(json_real(1.0)));
    assert_true(enabled(json_string("true")));
    assert_true(enabled(json_string("TRUE")));
    assert_true(enabled(json_string("True")));
    assert_true(enabled(json_string("tRuE")));

    assert_false(enabled(json_false()));
    assert_false(enabled(json_integer(0)));
    assert_false(enabled(json_integer(2)));
    assert_false(enabled(json_integer(-1)));
    assert_false(enabled(json_real(1.5)));
    assert_false(enabled(json_real(0.0)));
    assert_false(enabled(json_string("false")));
    assert_false(enabled(json_string("FALSE")));
    assert_false(enabled(json_string("yes")));
    assert_false(enabled(json_string("1")));
    assert_false(enabled(json_string("")));
    assert_false(enabled(json_string(" true")));
    assert_false(enabled(json_string("truex")));
    assert_false(enabled(json_null()));
    assert_false(enabled(json_object()));
    assert_false(enabled(json_array()));
    assert_false(integration_enabled(NULL, 0));
    /* number spellings jsonb keeps as written */
    assert_true(integration_enabled("1.0", 3));
    assert_true(integration_enabled("1e0", 3));
    assert_true(integration_enabled("10E-1", 5));
    assert_false(integration_enabled("1e400", 5));
    assert_true(integration_enabled("\"\\u0074rue\"", 11)); /* "\u0074rue" is "true" */
}

/* A realistic document, as PostgreSQL prints jsonb, plus members that are not integrations. */
static const char *const doc_keys[] = {"retailcrm", "ms", "uon", "smart", "Bad-Key", "bitrix24"};
static const char *const doc_values[] = {
    "{\"domain\": \"https://example.retailcrm.ru\", \"api_key\": \"<KEY>\", \"enabled\": true, "
    "\"user_extensions\": {\"18\": \"151\", \"19\": \"150\"}}",
    "{\"enabled\": \"TRUE\", \"api_token\": \"<TOKEN>\", \"employee_mapping\": {\"151\": "
    "{\"name\": "
    "\"Ivanov I.\", \"employee_id\": \"<UUID>\"}}, \"incoming_call_actions\": {\"create_client\": "
    "true}}",
    "{\"api_key\": \"<KEY>\", \"enabled\": \"false\", \"user_extensions\": {\"42\": \"152\"}}",
    "{\"mode\": \"routing+name\", \"lines\": {}, \"primary\": \"ms\"}",
    "{\"enabled\": 1}",
    "{\"enabled\": 1.0, \"x\": \"}{\\\"\"}",
};
static const bool doc_enabled[] = {true, true, false, false, true, true};
#define DOC_N 6

static char *make_doc(void)
{
    static char text[4096];
    size_t n = 0;
    n += (size_t)snprintf(text + n, sizeof text - n, "{");
    for (int i = 0; i < DOC_N; i++) {
        n +=
            (size_t)snprintf(text + n, sizeof text - n, "\"%s\": %s, ", doc_keys[i], doc_values[i]);
        if (i == 1) /* top-level values that are not objects are not integrations */
            n += (size_t)snprintf(text + n, sizeof text - n,
                                  "\"version\": 3, \"note\": \"x\", \"list\": [{}], ");
    }
    snprintf(text + n - 2, sizeof text - n + 2, "}");
    return text;
}

static void test_build_status_view(void **state)
{
    (void)state;
    unsigned problems = 5;
    const char *why;
    struct cache_entry *e = build("0367", make_doc(), &problems, &why);
    assert_non_null(e);
    assert_null(why);
    assert_int_equal(problems, 8); /* incremented by the three non-object values */
    char *s = status_view(e);
    const char *want = "{\"integrations\":{\"retailcrm\":true,\"ms\":true,\"uon\":false,"
                       "\"smart\":false,\"Bad-Key\":true,\"bitrix24\":true},"
                       "\"created_at\":1757159026.198,\"expires_at\":1757159116.198,"
                       "\"age_seconds\":";
    assert_string_equal(s, want);
    free(s);

    /* completed with an age and "}", it is a JSON object */
    size_t len = e->status_len + 8;
    char *full = malloc(len + 1);
    snprintf(full, len + 1, "%.*s7.36}", (int)e->status_len, e->text + e->status_off);
    json_t *j = load(full, strlen(full));
    json_t *ints = json_object_get(j, "integrations");
    assert_int_equal(json_object_size(ints), DOC_N);
    for (int i = 0; i < DOC_N; i++) {
        json_t *v = json_object_get(ints, doc_keys[i]);
        assert_non_null(v);
        if (json_is_true(v) != doc_enabled[i])
            fail_msg("%s: enabled should be %d", doc_keys[i], doc_enabled[i]);
    }
    assert_null(json_object_get(ints, "version"));
    assert_true(json_real_value(json_object_get(j, "expires_at")) -
                    json_real_value(json_object_get(j, "created_at")) >
                89.99);
    json_decref(j);
    free(full);
    assert_int_equal(e->seq, 7);
    assert_false(e->negative);
    assert_string_equal(e->number, "0367");
    entry_unref(e);
}

static void test_build_config_view(void **state)
{
    (void)state;
    const char *doc = make_doc();
    const char *why;
    struct cache_entry *e = build("0367", doc, NULL, &why); /* problems may be NULL */
    assert_non_null(e);
    assert_true(e->config_len > 0 && e->config_len <= e->status_off);
    json_t *j = load(e->text, e->config_len);
    assert_int_equal(json_object_size(j), 4);
    assert_string_equal(json_string_value(json_object_get(j, "enterprise_number")), "0367");
    assert_string_equal(json_string_value(json_object_get(j, "source")), "cache");
    assert_string_equal(json_string_value(json_object_get(j, "cached_at")),
                        "2025-09-06T11:43:46.198319");
    json_t *ints = json_object_get(j, "integrations");
    json_t *in = load(doc, strlen(doc));
    assert_int_equal(json_object_size(ints), DOC_N);
    for (int i = 0; i < DOC_N; i++)
        if (!json_equal(json_object_get(ints, doc_keys[i]), json_object_get(in, doc_keys[i])))
            fail_msg("integration %s differs from the input", doc_keys[i]);
    /* the integrations slice is the same object */
    json_t *slice = load(e->text + e->integrations_off, e->integrations_len);
    assert_true(json_equal(slice, ints));
    json_decref(slice);
    json_decref(in);
    json_decref(j);
    entry_unref(e);
}

static void test_build_type_slices(void **state)
{
    (void)state;
    const char *why;
    /* a 33-character key has the type charset but not its length */
    char doc[8192];
    const char *long_key = "abcdefghijklmnopqrstuvwxyz0123456";
    snprintf(doc, sizeof doc, "%.*s, \"%s\": {\"k\": 1}}", (int)strlen(make_doc()) - 1, make_doc(),
             long_key);
    struct cache_entry *e = build("0367", doc, NULL, &why);
    assert_non_null(e);
    /* every valid type name gets a slot, in document order; "Bad-Key" and the long key do not */
    const char *types[] = {"retailcrm", "ms", "uon", "smart", "bitrix24"};
    const int value_index[] = {0, 1, 2, 3, 5};
    assert_int_equal(e->ntypes, 5);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(e->types[i].name, types[i]);
        const char *want = doc_values[value_index[i]];
        assert_int_equal(e->types[i].len, strlen(want));
        assert_memory_equal(e->text + e->types[i].off, want, e->types[i].len);
        const struct entry_type *t = entry_find_type(e, types[i]);
        assert_ptr_equal(t, &e->types[i]);
    }
    assert_null(entry_find_type(e, "Bad-Key"));
    assert_null(entry_find_type(e, long_key));
    assert_null(entry_find_type(e, "version"));
    assert_null(entry_find_type(e, "nope"));
    /* the slices lie inside the config view */
    for (size_t i = 0; i < e->ntypes; i++)
        assert_true(e->types[i].off + e->types[i].len < e->config_len);
    entry_unref(e);
}

static void test_build_preserves_bytes(void **state)
{
    (void)state;
    const char *why;
    const char *value = "{\"enabled\": true, \"big\": 123456789012345678901234567890, \"f\": 1.50, "
                        "\"e\": 1E+2, \"neg\": -0, \"u\": \"\\u0416\\n\", \"nested\": {\"a\": [1, "
                        "2.000]}}";
    char doc[1024];
    snprintf(doc, sizeof doc, "{\"ms\": %s}", value);
    struct cache_entry *e = build("0367", doc, NULL, &why);
    assert_non_null(e);
    assert_int_equal(e->ntypes, 1);
    assert_int_equal(e->types[0].len, strlen(value));
    assert_memory_equal(e->text + e->types[0].off, value, strlen(value));
    /* the config view carries it unchanged too */
    char *view = strndup(e->text, e->config_len);
    assert_non_null(strstr(view, "123456789012345678901234567890"));
    assert_non_null(strstr(view, value));
    free(view);
    char *s = status_view(e);
    assert_string_equal(s, "{\"integrations\":{\"ms\":true},\"created_at\":1757159026.198,"
                           "\"expires_at\":1757159116.198,\"age_seconds\":");
    free(s);
    entry_unref(e);
}

static void test_build_escaped_keys(void **state)
{
    (void)state;
    const char *why;
    /* "m\u0073" is the key "ms"; "a\"b" is not a type name but is an integration object */
    const char *doc = "{\"m\\u0073\": {\"enabled\": true}, \"a\\\"b\": {\"enabled\": false}}";
    struct cache_entry *e = build("0367", doc, NULL, &why);
    assert_non_null(e);
    json_t *j = load(e->text, e->config_len);
    json_t *ints = json_object_get(j, "integrations");
    assert_int_equal(json_object_size(ints), 2);
    assert_non_null(json_object_get(ints, "ms"));
    assert_non_null(json_object_get(ints, "a\"b"));
    json_decref(j);
    const struct entry_type *t = entry_find_type(e, "ms");
    assert_non_null(t);
    assert_memory_equal(e->text + t->off, "{\"enabled\": true}", t->len);
    char *s = status_view(e);
    size_t len = strlen(s);
    char *full = malloc(len + 3);
    snprintf(full, len + 3, "%s0}", s);
    j = load(full, strlen(full));
    ints = json_object_get(j, "integrations");
    assert_true(json_is_true(json_object_get(ints, "ms")));
    assert_true(json_is_false(json_object_get(ints, "a\"b")));
    json_decref(j);
    free(full);
    free(s);
    entry_unref(e);
}

static void test_build_empty_config(void **state)
{
    (void)state;
    const char *why;
    unsigned problems = 0;
    struct cache_entry *e = build("0367", "{}", &problems, &why);
    assert_non_null(e);
    assert_int_equal(problems, 0);
    assert_int_equal(e->ntypes, 0);
    json_t *j = load(e->text, e->config_len);
    json_t *ints = json_object_get(j, "integrations");
    assert_true(json_is_object(ints));
    assert_int_equal(json_object_size(ints), 0);
    assert_string_equal(json_string_value(json_object_get(j, "enterprise_number")), "0367");
    json_decref(j);
    char *s = status_view(e);
    assert_string_equal(s, "{\"integrations\":{},\"created_at\":1757159026.198,"
                           "\"expires_at\":1757159116.198,\"age_seconds\":");
    free(s);
    entry_unref(e);

    /* only non-objects: integrations {} and every value is a problem */
    e = build("0367", "{\"a\": 1, \"b\": null}", &problems, &why);
    assert_non_null(e);
    assert_int_equal(problems, 2);
    assert_int_equal(e->ntypes, 0);
    assert_int_equal(e->integrations_len, 2);
    assert_memory_equal(e->text + e->integrations_off, "{}", 2);
    entry_unref(e);
}

static void test_build_rejects(void **state)
{
    (void)state;
    const char *bad[] = {
        "{\"ms\": {\"api_key\": \"s3cr3t-KEY\"}",                      /* truncated */
        "{\"ms\": {\"api_key\": \"s3cr3t-KEY\",}}",                    /* not JSON */
        "[{\"api_key\": \"s3cr3t-KEY\"}]",                             /* an array */
        "\"s3cr3t-KEY\"",                                              /* a string */
        "null",                                                        /* null */
        "{\"ms\": {\"a\": 1}, \"ms\": {\"api_key\": \"s3cr3t-KEY\"}}", /* duplicate keys */
        "{\"ms\": {\"api_key\": \"s3cr3t-KEY\"}} {}",                  /* trailing data */
        "",                                                            /* empty */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = NULL;
        unsigned problems = 0;
        struct cache_entry *e =
            entry_build("0367", bad[i], strlen(bad[i]), MAX_LEN, &clk, 1, &problems, &why);
        if (e)
            fail_msg("'%s' was accepted", bad[i]);
        assert_non_null(why);
        assert_true(strlen(why) > 0);
        if (strstr(why, "s3cr3t") || strstr(why, "api_key"))
            fail_msg("why leaks config content: %s", why);
    }
}

static void test_build_max_len(void **state)
{
    (void)state;
    const char *doc = "{\"ms\": {\"enabled\": true, \"api_key\": \"s3cr3t-KEY\"}}";
    size_t len = strlen(doc);
    const char *why = NULL;
    assert_null(entry_build("0367", doc, len, len - 1, &clk, 1, NULL, &why));
    assert_non_null(why);
    assert_null(strstr(why, "s3cr3t"));
    why = NULL;
    struct cache_entry *e = entry_build("0367", doc, len, len, &clk, 1, NULL, &why);
    assert_non_null(e); /* exactly max_len is fine */
    entry_unref(e);
}

static void test_build_bad_number(void **state)
{
    (void)state;
    const char *bad[] = {"", "03/67", "03 67", "0367!", "abcdefghijklmnopqrstuvwxyz0123456"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = NULL;
        if (build(bad[i], "{}", NULL, &why))
            fail_msg("enterprise number '%s' was accepted", bad[i]);
        assert_non_null(why);
    }
    const char *why;
    struct cache_entry *e = build("abcdefghijklmnopqrstuvwxyz012345", "{}", NULL, &why);
    assert_non_null(e); /* 32 characters */
    assert_string_equal(e->number, "abcdefghijklmnopqrstuvwxyz012345");
    entry_unref(e);
}

static void test_freshness(void **state)
{
    (void)state;
    const char *why;
    struct cache_entry *e = build("0367", "{}", NULL, &why);
    assert_non_null(e);
    assert_true(entry_fresh(e, 1000.0));
    assert_true(entry_fresh(e, 1089.999));
    assert_false(entry_fresh(e, 1090.0));
    assert_false(entry_fresh(e, 5000.0));
    entry_unref(e);

    struct cache_entry *n = entry_new_negative("0999", 50.0, 5.0, 42);
    assert_non_null(n);
    assert_true(n->negative);
    assert_string_equal(n->number, "0999");
    assert_int_equal(n->seq, 42);
    assert_int_equal(n->ntypes, 0);
    assert_null(entry_find_type(n, "ms"));
    assert_true(entry_fresh(n, 50.0));
    assert_true(entry_fresh(n, 54.9));
    assert_false(entry_fresh(n, 55.0));
    entry_unref(n);
}

static void test_refs(void **state)
{
    (void)state;
    const char *why;
    struct cache_entry *e = build("0367", make_doc(), NULL, &why);
    assert_non_null(e);
    assert_int_equal(atomic_load(&e->refs), 1);
    assert_ptr_equal(entry_ref(e), e);
    assert_ptr_equal(entry_ref(e), e);
    assert_int_equal(atomic_load(&e->refs), 3);
    entry_unref(e);
    entry_unref(e);
    assert_int_equal(atomic_load(&e->refs), 1);
    assert_string_equal(e->number, "0367"); /* still alive */
    entry_unref(e);                         /* freed here; ASan reports a leak or double free */
    entry_unref(NULL);                      /* NULL is a no-op */

    struct cache_entry *n = entry_new_negative("1", 0, 1, 1);
    entry_ref(n);
    entry_unref(n);
    entry_unref(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integration_enabled),
        cmocka_unit_test(test_build_status_view),
        cmocka_unit_test(test_build_config_view),
        cmocka_unit_test(test_build_type_slices),
        cmocka_unit_test(test_build_preserves_bytes),
        cmocka_unit_test(test_build_escaped_keys),
        cmocka_unit_test(test_build_empty_config),
        cmocka_unit_test(test_build_rejects),
        cmocka_unit_test(test_build_max_len),
        cmocka_unit_test(test_build_bad_number),
        cmocka_unit_test(test_freshness),
        cmocka_unit_test(test_refs),
    };
    return cmocka_run_group_tests(tests, use_utc, NULL);
}
