/*
 * Unit tests for src/util/buf: the bounded buffer (maximum enforced, failures leave the content
 * unchanged), buf_printf, JSON string escaping (quotes, backslash, control characters as \u00XX)
 * and buf_steal handing over the data.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "util/buf.h"

static void test_append_and_nul(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1024);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(buf_append(&b, "abc", 3), 0);
    assert_int_equal(buf_append_str(&b, "def"), 0);
    assert_int_equal(buf_append(&b, "ignored", 0), 0);
    assert_int_equal(b.len, 6);
    assert_string_equal(b.data, "abcdef");
    assert_true(b.cap > b.len); /* room for the NUL */
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    assert_int_equal(buf_append_str(&b, "x"), 0);
    assert_string_equal(b.data, "x");
    buf_deinit(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.max, 1024); /* a deinit'ed buffer can be reused with the same bound */
}

static void test_growth_keeps_content(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1 << 20);
    char chunk[100];
    for (int i = 0; i < 1000; i++) {
        memset(chunk, 'a' + i % 26, sizeof chunk);
        assert_int_equal(buf_append(&b, chunk, sizeof chunk), 0);
    }
    assert_int_equal(b.len, 100000);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(b.data[i * 100 + 99], 'a' + i % 26);
    assert_int_equal(b.data[b.len], '\0');
    buf_deinit(&b);
}

static void test_max_enforced(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 10);
    assert_int_equal(buf_append_str(&b, "0123456"), 0);
    /* 7 + 4 > 10: refused, content unchanged */
    assert_int_equal(buf_append_str(&b, "abcd"), -E2BIG);
    assert_int_equal(b.len, 7);
    assert_string_equal(b.data, "0123456");
    /* exactly up to max is allowed */
    assert_int_equal(buf_append_str(&b, "abc"), 0);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "0123456abc");
    assert_int_equal(buf_append(&b, "z", 1), -E2BIG);
    assert_string_equal(b.data, "0123456abc");
    /* an empty append at the limit still succeeds */
    assert_int_equal(buf_append(&b, "", 0), 0);
    /* a huge length must not overflow the bound check */
    assert_int_equal(buf_append(&b, "z", SIZE_MAX), -E2BIG);
    assert_int_equal(b.len, 10);
    buf_deinit(&b);

    buf_init(&b, 3);
    assert_int_equal(buf_append_str(&b, "abcd"), -E2BIG);
    assert_int_equal(b.len, 0);
    buf_deinit(&b);
}

static void test_printf(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 32);
    assert_int_equal(buf_printf(&b, "%s=%d", "n", 42), 0);
    assert_int_equal(buf_printf(&b, ",%.3f", 1.5), 0);
    assert_string_equal(b.data, "n=42,1.500");
    assert_int_equal(b.len, strlen("n=42,1.500"));
    /* would exceed 32: refused, unchanged */
    assert_int_equal(buf_printf(&b, "%030d", 7), -E2BIG);
    assert_string_equal(b.data, "n=42,1.500");
    assert_int_equal(b.len, 10);
    assert_int_equal(buf_printf(&b, "%s", ""), 0);
    assert_int_equal(b.len, 10);
    /* fills exactly to max */
    assert_int_equal(buf_printf(&b, "%022d", 1), 0);
    assert_int_equal(b.len, 32);
    assert_int_equal(b.data[32], '\0');
    buf_deinit(&b);
}

static void assert_json(const char *in, size_t len, const char *want)
{
    struct buf b;
    buf_init(&b, 1024);
    assert_int_equal(buf_append_json_string(&b, in, len), 0);
    assert_string_equal(b.data, want);
    assert_int_equal(b.len, strlen(want));
    buf_deinit(&b);
}

static void test_json_or_null(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 64);
    assert_int_equal(buf_append_json_or_null(&b, NULL), 0);
    assert_int_equal(buf_append_json_or_null(&b, "a\"b"), 0);
    assert_int_equal(buf_append_json_or_null(&b, ""), 0);
    assert_string_equal(b.data, "null\"a\\\"b\"\"\"");
    buf_deinit(&b);
}

static void test_reserve(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 100);
    assert_int_equal(buf_reserve(&b, 90), 0);
    assert_true(b.cap >= 91);
    char *data = b.data;
    size_t cap = b.cap;
    for (int i = 0; i < 9; i++)
        assert_int_equal(buf_append_str(&b, "0123456789"), 0);
    assert_ptr_equal(b.data, data); /* no growth after the hint */
    assert_int_equal(b.cap, cap);
    assert_int_equal(buf_reserve(&b, 11), -E2BIG); /* 90 + 11 > max */
    assert_int_equal(b.len, 90);
    buf_deinit(&b);
}

static void test_json_escaping(void **state)
{
    (void)state;
    assert_json("", 0, "\"\"");
    assert_json("plain", 5, "\"plain\"");
    assert_json("a\"b", 3, "\"a\\\"b\"");
    assert_json("a\\b", 3, "\"a\\\\b\"");
    assert_json("\n", 1, "\"\\u000a\"");
    assert_json("\t\r\x01\x1f", 4, "\"\\u0009\\u000d\\u0001\\u001f\"");
    assert_json("a\0b", 3, "\"a\\u0000b\""); /* length-delimited: an embedded NUL is escaped */
    assert_json(" ~\x7f", 3, "\" ~\x7f\"");  /* 0x20 and above pass through */
    assert_json("\xd0\x98\xd0\xb2", 4, "\"\xd0\x98\xd0\xb2\""); /* UTF-8 bytes untouched */
    assert_json("\"}{\\", 4, "\"\\\"}{\\\\\"");
}

static void test_json_escaping_appends(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 64);
    assert_int_equal(buf_append_str(&b, "{\"k\":"), 0);
    assert_int_equal(buf_append_json_string(&b, "v\"", 2), 0);
    assert_int_equal(buf_append_str(&b, "}"), 0);
    assert_string_equal(b.data, "{\"k\":\"v\\\"\"}");
    buf_deinit(&b);
}

static void test_json_escaping_all_or_nothing(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 12);
    assert_int_equal(buf_append_str(&b, "ab"), 0);
    /* the escaped form ("\u0001" + quotes = 8) would push 2 + 10 past 12: nothing is appended */
    assert_int_equal(buf_append_json_string(&b, "\x01\x01", 2), -E2BIG);
    assert_int_equal(b.len, 2);
    assert_string_equal(b.data, "ab");
    /* the closing quote alone would not fit */
    assert_int_equal(buf_append_json_string(&b, "123456789", 9), -E2BIG);
    assert_int_equal(b.len, 2);
    assert_string_equal(b.data, "ab");
    assert_int_equal(buf_append_json_string(&b, "12345678", 8), 0);
    assert_string_equal(b.data, "ab\"12345678\"");
    buf_deinit(&b);

    /* from an empty buffer whose maximum cannot hold even the opening quote */
    buf_init(&b, 0);
    assert_int_equal(buf_append_json_string(&b, "a", 1), -E2BIG);
    assert_int_equal(b.len, 0);
    buf_deinit(&b);
}

/* The caller's storage, never grown: what fits is written NUL-terminated, what does not fails
 * and leaves the content as it was. */
static void test_fixed_storage(void **state)
{
    (void)state;
    char storage[8];
    memset(storage, 'z', sizeof storage);
    struct buf b;
    buf_init_fixed(&b, storage, sizeof storage);
    assert_string_equal(storage, "");
    assert_int_equal(buf_append_str(&b, "abc"), 0);
    assert_int_equal(buf_printf(&b, "%d", 42), 0);
    assert_ptr_equal(b.data, storage);
    assert_string_equal(storage, "abc42");
    assert_int_equal(buf_append_str(&b, "xyz"), -E2BIG); /* 8 bytes with the NUL: one too many */
    assert_string_equal(storage, "abc42");
    assert_int_equal(buf_append_str(&b, "xy"), 0); /* exactly full */
    assert_ptr_equal(b.data, storage);
    assert_string_equal(storage, "abc42xy");
    assert_int_equal(buf_append(&b, "!", 1), -E2BIG);
    assert_int_equal(b.len, 7);
}

static void test_steal(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 100);
    assert_int_equal(buf_append_str(&b, "hello"), 0);
    size_t len = 0;
    char *d = buf_steal(&b, &len);
    assert_non_null(d);
    assert_int_equal(len, 5);
    assert_string_equal(d, "hello");
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    /* the buffer is usable again and does not share memory with the stolen data */
    assert_int_equal(buf_append_str(&b, "again"), 0);
    assert_string_equal(b.data, "again");
    assert_string_equal(d, "hello");
    free(d);
    buf_deinit(&b);

    /* stealing an empty buffer gives an empty string, not NULL */
    buf_init(&b, 100);
    d = buf_steal(&b, &len);
    assert_non_null(d);
    assert_int_equal(len, 0);
    assert_string_equal(d, "");
    free(d);
    d = buf_steal(&b, NULL); /* len may be NULL */
    assert_non_null(d);
    free(d);
    buf_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_nul),
        cmocka_unit_test(test_growth_keeps_content),
        cmocka_unit_test(test_max_enforced),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_json_or_null),
        cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_json_escaping_appends),
        cmocka_unit_test(test_json_escaping_all_or_nothing),
        cmocka_unit_test(test_fixed_storage),
        cmocka_unit_test(test_steal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
