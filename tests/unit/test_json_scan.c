/*
 * Unit tests for src/cache/json_scan: strict validation (structure, strings, escapes, UTF-8,
 * numbers, depth), member offsets of the top-level object, duplicate keys, and the helpers that
 * find a member and decode a string. Every invalid case must be rejected without reading past
 * the given length (ASan builds check that).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cache/json_scan.h"

/* Scans a private heap copy of exactly len bytes, so a read past the end is an ASan error. */
static int scan(const char *text, struct json_member *m, int max)
{
    size_t len = strlen(text);
    char *copy = malloc(len ? len : 1);
    memcpy(copy, text, len);
    int n = json_scan_object(copy, len, m, max);
    free(copy);
    return n;
}

static void test_valid_documents(void **state)
{
    (void)state;
    const char *const ok[] = {
        "{}",
        " { } ",
        "{\"a\": 1}",
        "{\"a\": {\"b\": [1, 2.5, -0.5e+10, 1E400, 123456789012345678901234567890]}}",
        "{\"s\": \"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9\"}",
        "{\"utf8\": \"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xe2\x82\xac "
        "\xf0\x9f\x98\x80\"}",
        "{\"t\": true, \"f\": false, \"n\": null, \"e\": [], \"o\": {}}",
    };
    struct json_member m[8];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (scan(ok[i], m, 8) < 0)
            fail_msg("rejected valid JSON: %s", ok[i]);
}

static void test_invalid_documents(void **state)
{
    (void)state;
    const char *const bad[] = {
        "",
        "{",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "{a:1}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":-}",
        "{\"a\":1e}",
        "{\"a\":+1}",
        "{\"a\":tru}",
        "{\"a\":nul}",
        "{\"a\":\"x}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":\"\\u12g4\"}",
        "{\"a\":\"\t\"}",
        "{\"a\":\"\xc0\xaf\"}",     /* overlong */
        "{\"a\":\"\xed\xa0\x80\"}", /* surrogate */
        "{\"a\":\"\xff\"}",         /* not UTF-8 */
        "{\"a\":\"\xe2\x82\"}",     /* truncated sequence */
        "{\"a\":[1 2]}",
        "{\"a\":1} x",
        "{\"a\":1}}",
        "[1,]",
        "{\"a\":[}",
    };
    struct json_member m[8];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (scan(bad[i], m, 8) != JSON_SCAN_INVALID)
            fail_msg("accepted invalid JSON #%zu: %s", i, bad[i]);
}

static void test_not_an_object(void **state)
{
    (void)state;
    const char *const other[] = {"[1,2]", "\"x\"", "1", "true", "null"};
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        assert_int_equal(scan(other[i], NULL, 0), JSON_SCAN_NOT_OBJECT);
}

static void test_depth_bounded(void **state)
{
    (void)state;
    char deep[2 * JSON_SCAN_MAX_DEPTH + 64];
    size_t n = 0;
    deep[n++] = '{';
    memcpy(deep + n, "\"a\":", 4);
    n += 4;
    for (int i = 0; i < JSON_SCAN_MAX_DEPTH + 5; i++)
        deep[n++] = '[';
    for (int i = 0; i < JSON_SCAN_MAX_DEPTH + 5; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    assert_int_equal(scan(deep, NULL, 0), JSON_SCAN_INVALID);
}

static void test_member_offsets(void **state)
{
    (void)state;
    const char *doc = "{\"ms\": {\"enabled\": true}, \"note\": \"x\", \"k\\\"q\": [1]}";
    struct json_member m[4];
    int n = json_scan_object(doc, strlen(doc), m, 4);
    assert_int_equal(n, 3);
    assert_memory_equal(doc + m[0].key_off, "ms", 2);
    assert_int_equal(m[0].key_len, 2);
    assert_int_equal(m[0].kind, JK_OBJECT);
    assert_memory_equal(doc + m[0].value_off, "{\"enabled\": true}", m[0].value_len);
    assert_int_equal(m[1].kind, JK_STRING);
    assert_memory_equal(doc + m[1].value_off, "\"x\"", 3);
    assert_memory_equal(doc + m[2].key_off, "k\\\"q", m[2].key_len);
    assert_int_equal(m[2].kind, JK_ARRAY);
    /* fewer slots than members: the count still tells */
    assert_int_equal(json_scan_object(doc, strlen(doc), m, 1), 3);
}

static void test_duplicates(void **state)
{
    (void)state;
    struct json_member m[4];
    assert_int_equal(scan("{\"a\":1,\"a\":2}", m, 4), JSON_SCAN_DUPLICATE);
    assert_int_equal(scan("{\"a\":{\"b\":1,\"b\":2}}", m, 4), 1); /* only the top level */
}

static void test_find_member_and_decode(void **state)
{
    (void)state;
    const char *obj = "{\"api_key\": \"<KEY>\", \"enabled\": \"TRUE\", \"x\": {\"enabled\": 0}}";
    struct json_member m;
    assert_true(json_find_member(obj, strlen(obj), "enabled", &m));
    assert_int_equal(m.kind, JK_STRING);
    char out[16];
    assert_true(json_decode_string(obj + m.value_off, m.value_len, true, out, sizeof out));
    assert_string_equal(out, "TRUE");
    assert_false(json_find_member(obj, strlen(obj), "primary", &m));
    assert_true(json_decode_string("a\\u0062\\n", 9, false, out, sizeof out));
    assert_string_equal(out, "ab\n");
    assert_false(json_decode_string("abcdef", 6, false, out, 4));           /* does not fit */
    assert_false(json_decode_string("\\u00e9", 6, false, out, sizeof out)); /* not ASCII */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_documents),        cmocka_unit_test(test_invalid_documents),
        cmocka_unit_test(test_not_an_object),          cmocka_unit_test(test_depth_bounded),
        cmocka_unit_test(test_member_offsets),         cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_find_member_and_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
