/*
 * Unit tests for src/util/phone: normalisation to +digits (SPEC §6.1), internal (2–5 digits) and
 * external numbers, and the §6.4 transform rule ("+375{9}"): digits kept, malformed rules, too few
 * digits and a too small output buffer all refused without touching the output.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "util/phone.h"

static void norm_is(const char *in, const char *want)
{
    char out[PHONE_MAX];
    memset(out, 'x', sizeof out);
    phone_normalize(in, out, sizeof out);
    assert_string_equal(out, want);
}

static void test_normalize(void **state)
{
    (void)state;
    norm_is("79001234567", "+79001234567");
    norm_is("+79001234567", "+79001234567");
    norm_is("375291234567", "+375291234567");
    norm_is("151", "+151"); /* all digits: a + even for short numbers */
    norm_is("8 (900) 123", "8 (900) 123");
    norm_is("+7 900 123", "+7 900 123");
    norm_is("anonymous", "anonymous");
    norm_is("", "");
}

static void test_normalize_truncates(void **state)
{
    (void)state;
    char out[5];
    phone_normalize("79001234567", out, sizeof out);
    assert_string_equal(out, "+790");
    phone_normalize("abcdefgh", out, sizeof out);
    assert_string_equal(out, "abcd");
}

static void test_is_internal(void **state)
{
    (void)state;
    assert_true(phone_is_internal("10"));
    assert_true(phone_is_internal("151"));
    assert_true(phone_is_internal("1234"));
    assert_true(phone_is_internal("12345"));

    assert_false(phone_is_internal(""));
    assert_false(phone_is_internal("1"));
    assert_false(phone_is_internal("123456"));
    assert_false(phone_is_internal("79001234567"));
    assert_false(phone_is_internal("+151"));
    assert_false(phone_is_internal("15a"));
    assert_false(phone_is_internal("1 51"));
    assert_false(phone_is_internal("ext12"));
}

static void test_is_external(void **state)
{
    (void)state;
    assert_true(phone_is_external("79001234567"));
    assert_true(phone_is_external("+79001234567"));
    assert_true(phone_is_external("8 (900) 123"));
    assert_true(phone_is_external("123456"));
    assert_true(phone_is_external("1")); /* not 2–5 digits, has a digit */

    assert_false(phone_is_external(""));
    assert_false(phone_is_external("151"));
    assert_false(phone_is_external("12345"));
    assert_false(phone_is_external("anonymous"));
    assert_false(phone_is_external("+"));
}

static void test_transform(void **state)
{
    (void)state;
    char out[PHONE_MAX];
    assert_true(phone_transform("+375{9}", "80291234567", out, sizeof out));
    assert_string_equal(out, "+375291234567");
    assert_true(phone_transform("+375{9}", "+375 (29) 123-45-67", out, sizeof out));
    assert_string_equal(out, "+375291234567");
    assert_true(phone_transform("+375{9}", "291234567", out, sizeof out)); /* exactly 9 */
    assert_string_equal(out, "+375291234567");
    assert_true(phone_transform("8{10}", "+79001234567", out, sizeof out));
    assert_string_equal(out, "89001234567");
    assert_true(phone_transform("{4}", "79001234567", out, sizeof out)); /* empty prefix */
    assert_string_equal(out, "4567");
}

/* A refused transform returns false and leaves the output as it was. */
static void refused(const char *rule, const char *number)
{
    char out[PHONE_MAX] = "untouched";
    if (phone_transform(rule, number, out, sizeof out))
        fail_msg("rule \"%s\" on \"%s\" accepted: \"%s\"", rule, number, out);
    assert_string_equal(out, "untouched");
}

static void test_transform_refused(void **state)
{
    (void)state;
    refused("+375{9}", "12345678"); /* fewer digits than kept */
    refused("+375{9}", "");
    refused("+375{9}", "anonymous");
    refused("+375", "80291234567");
    refused("+375{}", "80291234567");
    refused("+375{x}", "80291234567");
    refused("+375{9x}", "80291234567");
    refused("+375{0}", "80291234567");
    refused("{9}x", "80291234567");
    refused("+375{9", "80291234567");
    refused("+375{999}", "80291234567");
    refused("", "80291234567");
}

static void test_transform_small_buffer(void **state)
{
    (void)state;
    char out[13]; /* "+375291234567" needs 14 with its NUL */
    assert_false(phone_transform("+375{9}", "80291234567", out, sizeof out));
    char fits[14];
    assert_true(phone_transform("+375{9}", "80291234567", fits, sizeof fits));
    assert_string_equal(fits, "+375291234567");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_normalize_truncates),
        cmocka_unit_test(test_is_internal),
        cmocka_unit_test(test_is_external),
        cmocka_unit_test(test_transform),
        cmocka_unit_test(test_transform_refused),
        cmocka_unit_test(test_transform_small_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
