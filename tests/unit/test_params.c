/*
 * Unit tests for src/util/params: the path parameters of SPEC §3 (enterprise number, integration
 * type, phone) — each kind's character set, the 1–32 length rule, percent-decoding and its errors,
 * and the exact 400 detail texts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "util/params.h"

/* Parses a NUL-terminated raw value; the output buffer is poisoned first so a missing NUL shows. */
static int parse(enum param_kind kind, const char *raw, char *out)
{
    memset(out, 'X', PARAM_MAX_LEN + 1);
    return param_parse(kind, raw, strlen(raw), out);
}

static void assert_ok(enum param_kind kind, const char *raw, const char *want)
{
    char out[PARAM_MAX_LEN + 1];
    if (parse(kind, raw, out) != 0)
        fail_msg("kind %d: '%s' was rejected", (int)kind, raw);
    assert_string_equal(out, want);
}

static void assert_bad(enum param_kind kind, const char *raw)
{
    char out[PARAM_MAX_LEN + 1];
    if (parse(kind, raw, out) != -1)
        fail_msg("kind %d: '%s' was accepted", (int)kind, raw);
}

static void test_enterprise_charset(void **state)
{
    (void)state;
    assert_ok(PARAM_ENTERPRISE, "0367", "0367");
    assert_ok(PARAM_ENTERPRISE, "AZaz09_-", "AZaz09_-");
    assert_ok(PARAM_ENTERPRISE, "x", "x");
    const char *bad[] = {"03 67", "03.67", "03/67", "0367+", "é", "a:b", "a~b", "(1)", "a\tb"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_bad(PARAM_ENTERPRISE, bad[i]);
    assert_true(param_valid(PARAM_ENTERPRISE, "0367", 4));
    assert_false(param_valid(PARAM_ENTERPRISE, "0367!", 5));
}

static void test_type_charset(void **state)
{
    (void)state;
    assert_ok(PARAM_TYPE, "retailcrm", "retailcrm");
    assert_ok(PARAM_TYPE, "ms", "ms");
    assert_ok(PARAM_TYPE, "bitrix24", "bitrix24");
    assert_ok(PARAM_TYPE, "a_b_9", "a_b_9");
    const char *bad[] = {"Ms", "RETAILCRM", "a-b", "a b", "a.b", "ms/", "+1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_bad(PARAM_TYPE, bad[i]);
}

static void test_phone_charset(void **state)
{
    (void)state;
    assert_ok(PARAM_PHONE, "+7 (999) 123-45-67", "+7 (999) 123-45-67");
    assert_ok(PARAM_PHONE, "79991234567", "79991234567");
    assert_ok(PARAM_PHONE, "+", "+");
    const char *bad[] = {"7999a", "7_999", "7.999", "7/999", "#1", "7999*", "[1]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_bad(PARAM_PHONE, bad[i]);
}

static void test_length_bounds(void **state)
{
    (void)state;
    char s32[33], s33[34];
    memset(s32, '1', 32);
    s32[32] = '\0';
    memset(s33, '1', 33);
    s33[33] = '\0';
    enum param_kind kinds[] = {PARAM_ENTERPRISE, PARAM_TYPE, PARAM_PHONE};
    for (size_t k = 0; k < 3; k++) {
        assert_ok(kinds[k], s32, s32);
        assert_bad(kinds[k], s33);
        assert_bad(kinds[k], "");
        assert_false(param_valid(kinds[k], "", 0));
        assert_true(param_valid(kinds[k], s32, 32));
        assert_false(param_valid(kinds[k], s33, 33));
    }
}

static void test_percent_decoding(void **state)
{
    (void)state;
    assert_ok(PARAM_ENTERPRISE, "%41", "A");
    assert_ok(PARAM_ENTERPRISE, "%30%33%36%37", "0367");
    assert_ok(PARAM_ENTERPRISE, "a%5fb", "a_b"); /* lower-case hex digits */
    assert_ok(PARAM_ENTERPRISE, "a%5Fb", "a_b");
    assert_ok(PARAM_PHONE, "%2B7%20999", "+7 999");
    assert_ok(PARAM_TYPE, "m%73", "ms");
    /* decodes fine, but the decoded character is outside every set */
    assert_bad(PARAM_ENTERPRISE, "03%2F67");
    assert_bad(PARAM_TYPE, "ms%2F");
    assert_bad(PARAM_PHONE, "%2F");
    assert_bad(PARAM_ENTERPRISE, "%00");
    assert_bad(PARAM_ENTERPRISE, "a%2Eb");
    /* the decoded value must still be in its set: %41 is 'A', not allowed in a type */
    assert_bad(PARAM_TYPE, "%41");
}

static void test_percent_errors(void **state)
{
    (void)state;
    enum param_kind kinds[] = {PARAM_ENTERPRISE, PARAM_TYPE, PARAM_PHONE};
    for (size_t k = 0; k < 3; k++) {
        assert_bad(kinds[k], "%zz");
        assert_bad(kinds[k], "1%zz");
        assert_bad(kinds[k], "%4");
        assert_bad(kinds[k], "1%4");
        assert_bad(kinds[k], "%");
        assert_bad(kinds[k], "1%");
        assert_bad(kinds[k], "%g1");
        assert_bad(kinds[k], "%1g");
    }
}

static void test_decoded_length(void **state)
{
    (void)state;
    /* the limit applies to the decoded value: 32 escapes give 32 characters (fine), 33 give 33 */
    char raw[3 * 33 + 1];
    for (int i = 0; i < 32; i++)
        memcpy(raw + 3 * i, "%31", 3);
    raw[3 * 32] = '\0';
    char want[33];
    memset(want, '1', 32);
    want[32] = '\0';
    assert_ok(PARAM_ENTERPRISE, raw, want);
    memcpy(raw + 3 * 32, "%31", 4);
    assert_bad(PARAM_ENTERPRISE, raw);
    /* and rejecting it never writes past the PARAM_MAX_LEN + 1 bytes of `out` */
    char guarded[PARAM_MAX_LEN + 2];
    guarded[PARAM_MAX_LEN + 1] = '#';
    assert_int_equal(param_parse(PARAM_ENTERPRISE, raw, strlen(raw), guarded), -1);
    assert_int_equal(guarded[PARAM_MAX_LEN + 1], '#');
    guarded[PARAM_MAX_LEN + 1] = '#';
    assert_int_equal(param_parse(PARAM_ENTERPRISE, want, 32, guarded), 0);
    assert_int_equal(guarded[PARAM_MAX_LEN + 1], '#');
    assert_int_equal(
        param_parse(PARAM_ENTERPRISE, "111111111111111111111111111111111", 33, guarded), -1);
    assert_int_equal(guarded[PARAM_MAX_LEN + 1], '#');
    /* a raw value longer than 32 that decodes to <= 32 is fine */
    assert_true(strlen("%41%42%43%44%45%46%47%48%49%4A%4B%4C") > 32);
    assert_ok(PARAM_ENTERPRISE, "%41%42%43%44%45%46%47%48%49%4A%4B%4C", "ABCDEFGHIJKL");
}

static void test_not_nul_terminated_input(void **state)
{
    (void)state;
    /* only raw[0..len) is read: the rest of the path must not leak into the value */
    const char *path = "0367/ms";
    char out[PARAM_MAX_LEN + 1];
    assert_int_equal(param_parse(PARAM_ENTERPRISE, path, 4, out), 0);
    assert_string_equal(out, "0367");
    assert_int_equal(param_parse(PARAM_TYPE, path + 5, 2, out), 0);
    assert_string_equal(out, "ms");
    /* a '%' whose escape digits lie beyond len is truncated, not read past the end */
    assert_int_equal(param_parse(PARAM_ENTERPRISE, "ab%41", 4, out), -1);
}

static void test_error_texts(void **state)
{
    (void)state;
    assert_string_equal(param_error(PARAM_ENTERPRISE), "invalid enterprise_number");
    assert_string_equal(param_error(PARAM_TYPE), "invalid integration_type");
    assert_string_equal(param_error(PARAM_PHONE), "invalid phone");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enterprise_charset), cmocka_unit_test(test_type_charset),
        cmocka_unit_test(test_phone_charset),      cmocka_unit_test(test_length_bounds),
        cmocka_unit_test(test_percent_decoding),   cmocka_unit_test(test_percent_errors),
        cmocka_unit_test(test_decoded_length),     cmocka_unit_test(test_not_nul_terminated_input),
        cmocka_unit_test(test_error_texts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
