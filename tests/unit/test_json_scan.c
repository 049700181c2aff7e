/*
 * Unit tests for src/cache/json_scan: strict validation (structure, strings, escapes, UTF-8,
 * numbers, depth, at every offset of the eight-byte string path), member offsets of the top-level
 * object and of the members looked for one level down, duplicate keys, and string decoding. Every
 * invalid case must be rejected without reading past the given length (ASan builds check that).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
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
    int n = json_scan_object(copy, len, NULL, m, max);
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
    int n = json_scan_object(doc, strlen(doc), NULL, m, 4);
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
    assert_int_equal(json_scan_object(doc, strlen(doc), NULL, m, 1), 3);
}

static void test_duplicates(void **state)
{
    (void)state;
    struct json_member m[4];
    assert_int_equal(scan("{\"a\":1,\"a\":2}", m, 4), JSON_SCAN_DUPLICATE);
    assert_int_equal(scan("{\"a\":{\"b\":1,\"b\":2}}", m, 4), 1); /* only the top level */
}

/* The slice of an inner member as a NUL-terminated copy ("" when absent). */
static const char *inner_text(const char *doc, const struct json_member *m, int k)
{
    static char out[128];
    snprintf(out, sizeof out, "%.*s", (int)m->inner[k].len, doc + m->inner[k].off);
    return out;
}

static void test_inner_members(void **state)
{
    (void)state;
    static const char *const names[] = {"enabled", "primary", NULL};
    const char *doc = "{\"ms\": {\"api_key\": \"<KEY>\", \"enabled\": \"TRUE\", "
                      "\"x\": {\"enabled\": 0}, \"primary\": \"uon\"},"
                      " \"uon\": {\"enab\\u006ced\": 1, \"enabled\": true},"
                      " \"smart\": {\"deep\": {\"primary\": \"ms\"}},"
                      " \"list\": [{\"enabled\": true}], \"s\": \"enabled\"}";
    struct json_member m[8];
    size_t len = strlen(doc);
    char *copy = malloc(len);
    memcpy(copy, doc, len);
    assert_int_equal(json_scan_object(copy, len, names, m, 8), 5);
    free(copy);
    assert_string_equal(inner_text(doc, &m[0], 0), "\"TRUE\""); /* not the nested one */
    assert_string_equal(inner_text(doc, &m[0], 1), "\"uon\"");
    assert_string_equal(inner_text(doc, &m[1], 0), "true"); /* escaped key matches; last wins */
    assert_int_equal(m[1].inner[1].len, 0);
    assert_int_equal(m[2].inner[0].len, 0); /* only one level down */
    assert_int_equal(m[2].inner[1].len, 0);
    assert_int_equal(m[3].inner[0].len, 0); /* arrays are not searched */
    assert_int_equal(m[4].inner[0].len, 0);
    /* without names nothing is looked for */
    assert_int_equal(json_scan_object(doc, len, NULL, m, 8), 5);
    assert_int_equal(m[0].inner[0].len, 0);
}

static void test_decode_string(void **state)
{
    (void)state;
    char out[16];
    assert_true(json_decode_string("\"TRUE\"", 6, true, out, sizeof out));
    assert_string_equal(out, "TRUE");
    assert_true(json_decode_string("a\\u0062\\n", 9, false, out, sizeof out));
    assert_string_equal(out, "ab\n");
    assert_false(json_decode_string("abcdef", 6, false, out, 4));           /* does not fit */
    assert_false(json_decode_string("\\u00e9", 6, false, out, sizeof out)); /* not ASCII */
}

/* The eight-byte fast path: every byte that needs a look is found wherever it sits in a word. */
static void test_strings_at_every_offset(void **state)
{
    (void)state;
    const char *const specials[] = {"\\\"", "\\\\", "\\u0041", "\xc3\xa9", "\xe2\x82\xac"};
    const char *const wrong[] = {"\"", "\x01", "\x1f", "\x7f\xff", "\\q", "\xc3"};
    for (int pad = 0; pad < 17; pad++) {
        char doc[96];
        for (size_t k = 0; k < sizeof specials / sizeof specials[0]; k++) {
            snprintf(doc, sizeof doc, "{\"a\":\"%.*s%s%.*s\"}", pad, "01234567890123456",
                     specials[k], 17 - pad, "abcdefghijklmnopq");
            if (scan(doc, NULL, 0) != 1)
                fail_msg("rejected %s", doc);
        }
        for (size_t k = 0; k < sizeof wrong / sizeof wrong[0]; k++) {
            snprintf(doc, sizeof doc, "{\"a\":\"%.*s%s%.*s\"}", pad, "01234567890123456", wrong[k],
                     17 - pad, "abcdefghijklmnopq");
            if (scan(doc, NULL, 0) != JSON_SCAN_INVALID)
                fail_msg("accepted %s", doc);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_documents),         cmocka_unit_test(test_invalid_documents),
        cmocka_unit_test(test_not_an_object),           cmocka_unit_test(test_depth_bounded),
        cmocka_unit_test(test_member_offsets),          cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_inner_members),           cmocka_unit_test(test_decode_string),
        cmocka_unit_test(test_strings_at_every_offset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
