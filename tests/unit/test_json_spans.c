/*
 * Unit tests for src/cache/json_spans: member boundaries of a top-level JSON object — simple and
 * nested values, strings holding braces and (escaped) quotes, jsonb's whitespace, the empty object,
 * rejection of non-objects and truncated text, and more members than the caller has room for.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cache/json_spans.h"

#define MAXS 8

/* Scans `text` and checks the n expected keys and values (raw text, as written). The text is
 * copied to an exact-size heap block so ASan flags any read past its end. */
static void check(const char *text, int n, const char *const *keys, const char *const *values)
{
    size_t len = strlen(text);
    char *copy = malloc(len ? len : 1);
    memcpy(copy, text, len);
    struct json_span spans[MAXS];
    int got = json_object_spans(copy, len, spans, MAXS);
    if (got != n)
        fail_msg("'%s': %d members, expected %d", text, got, n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(spans[i].key_len, strlen(keys[i]));
        assert_memory_equal(copy + spans[i].key_off, keys[i], spans[i].key_len);
        if (spans[i].value_len != strlen(values[i]) ||
            memcmp(copy + spans[i].value_off, values[i], spans[i].value_len) != 0)
            fail_msg("'%s' member %d: value '%.*s', expected '%s'", text, i,
                     (int)spans[i].value_len, copy + spans[i].value_off, values[i]);
    }
    free(copy);
}

static int scan(const char *text)
{
    size_t len = strlen(text);
    char *copy = malloc(len ? len : 1);
    memcpy(copy, text, len);
    struct json_span spans[MAXS];
    int n = json_object_spans(copy, len, spans, MAXS);
    free(copy);
    return n;
}

static void test_simple(void **state)
{
    (void)state;
    const char *k[] = {"a", "bb", "c", "d", "e", "f"};
    const char *v[] = {"1", "\"x\"", "true", "null", "-1.5e3", "false"};
    check("{\"a\":1,\"bb\":\"x\",\"c\":true,\"d\":null,\"e\":-1.5e3,\"f\":false}", 6, k, v);
    check("{\"a\":1}", 1, k, v);
}

static void test_nested(void **state)
{
    (void)state;
    const char *k[] = {"ms", "arr", "last"};
    const char *v[] = {"{\"enabled\":true,\"m\":{\"151\":{\"n\":\"I\"}}}", "[1,[2,{\"x\":[]}],{}]",
                       "{}"};
    check("{\"ms\":{\"enabled\":true,\"m\":{\"151\":{\"n\":\"I\"}}},\"arr\":[1,[2,{\"x\":[]}],{}],"
          "\"last\":{}}",
          3, k, v);
}

static void test_tricky_strings(void **state)
{
    (void)state;
    const char *k[] = {"k{", "q\\\"k", "v"};
    const char *v[] = {"\"}{][,:\"", "{\"s\":\"a\\\"}b\\\\\",\"t\":\"\\\\\"}", "\"\\\\\""};
    /* a brace and bracket inside strings, an escaped quote in a key, a string ending in an
     * escaped backslash (so the quote after it does close the string) */
    check("{\"k{\":\"}{][,:\",\"q\\\"k\":{\"s\":\"a\\\"}b\\\\\",\"t\":\"\\\\\"},\"v\":\"\\\\\"}", 3,
          k, v);
}

static void test_jsonb_whitespace(void **state)
{
    (void)state;
    const char *k[] = {"a", "b"};
    const char *v[] = {"1", "{\"c\": [1, 2]}"};
    /* the way PostgreSQL prints jsonb */
    check("{\"a\": 1, \"b\": {\"c\": [1, 2]}}", 2, k, v);
    /* any JSON whitespace around every token, values stay exactly as written */
    check(" \n{\t\"a\" :\r\n1 ,\n  \"b\"\t:  {\"c\": [1, 2]}  \n}\n ", 2, k, v);
}

static void test_empty_object(void **state)
{
    (void)state;
    assert_int_equal(scan("{}"), 0);
    assert_int_equal(scan("{ }"), 0);
    assert_int_equal(scan("  {\n}  "), 0);
    assert_int_equal(json_object_spans("{}", 2, NULL, 0), 0);
}

static void test_not_an_object(void **state)
{
    (void)state;
    const char *bad[] = {"", "   ", "[]", "[{\"a\":1}]", "\"{}\"", "1", "null", "true", "x{}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (scan(bad[i]) != -1)
            fail_msg("'%s' was scanned as an object", bad[i]);
}

static void test_truncated(void **state)
{
    (void)state;
    const char *full = "{\"a\": \"x\\\"y\", \"b\": {\"c\": [1, \"]}\"]}, \"n\": 12}";
    size_t len = strlen(full);
    assert_int_equal(scan(full), 3);
    /* every proper prefix ends early; the scanner must say so and stay inside the text */
    for (size_t cut = 0; cut < len; cut++) {
        char *copy = malloc(cut ? cut : 1);
        memcpy(copy, full, cut);
        struct json_span spans[MAXS];
        int n = json_object_spans(copy, cut, spans, MAXS);
        free(copy);
        if (n != -1)
            fail_msg("prefix of %zu bytes gave %d", cut, n);
    }
    const char *bad[] = {"{",          "{\"a\"", "{\"a\":",          "{\"a\":1",   "{\"a\":1,",
                         "{\"a\":\"x", "{\"a\\", "{\"a\":{\"b\":1}", "{\"a\":[1,2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (scan(bad[i]) != -1)
            fail_msg("'%s' was accepted", bad[i]);
}

static void test_more_than_max(void **state)
{
    (void)state;
    const char *text = "{\"a\":1,\"b\":2,\"c\":{\"d\":3},\"e\":4}";
    struct json_span spans[3];
    memset(spans, 0xAB, sizeof spans);
    struct json_span guard = spans[2];
    int n = json_object_spans(text, strlen(text), spans, 2);
    assert_int_equal(n, 4);
    /* the first two were stored, the third slot was not touched */
    assert_memory_equal(text + spans[0].key_off, "a", 1);
    assert_memory_equal(text + spans[1].key_off, "b", 1);
    assert_memory_equal(text + spans[1].value_off, "2", spans[1].value_len);
    assert_memory_equal(&spans[2], &guard, sizeof guard);
    /* max 0 only counts */
    assert_int_equal(json_object_spans(text, strlen(text), NULL, 0), 4);
}

static void test_offsets_are_absolute(void **state)
{
    (void)state;
    const char *text = "  {\"key\": \"val\"}";
    struct json_span s;
    assert_int_equal(json_object_spans(text, strlen(text), &s, 1), 1);
    assert_int_equal(s.key_off, 4);
    assert_int_equal(s.key_len, 3);
    assert_int_equal(s.value_off, 10);
    assert_int_equal(s.value_len, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),
        cmocka_unit_test(test_nested),
        cmocka_unit_test(test_tricky_strings),
        cmocka_unit_test(test_jsonb_whitespace),
        cmocka_unit_test(test_empty_object),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_more_than_max),
        cmocka_unit_test(test_offsets_are_absolute),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
