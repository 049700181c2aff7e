/*
 * Unit tests for src/util/timeutil: the ISO local-time form with microseconds of SPEC §3
 * (2025-09-06T11:43:46.198319) under TZ=UTC and another zone, rounding of microseconds across a
 * second boundary, output truncation, and the two clocks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "util/timeutil.h"

static void set_tz(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

static int use_utc(void **state)
{
    (void)state;
    set_tz("UTC");
    return 0;
}

static void assert_iso(double epoch, const char *want)
{
    char out[64];
    memset(out, 'X', sizeof out);
    size_t n = time_format_iso(epoch, out, sizeof out);
    assert_string_equal(out, want);
    assert_int_equal(n, 26);
    assert_int_equal(strlen(out), 26);
}

static void test_spec_example_utc(void **state)
{
    (void)state;
    assert_iso(1757159026.198319, "2025-09-06T11:43:46.198319");
    assert_iso(1757159026.0, "2025-09-06T11:43:46.000000");
    assert_iso(0.0, "1970-01-01T00:00:00.000000");
    assert_iso(1757159026.000001, "2025-09-06T11:43:46.000001");
    assert_iso(1709164800.5, "2024-02-29T00:00:00.500000"); /* leap day */
}

static void test_rounding_rolls_over(void **state)
{
    (void)state;
    /* .9999996 rounds to 1000000 µs: the second (and here minute, hour, day) rolls over */
    assert_iso(1757159026.9999996, "2025-09-06T11:43:47.000000");
    assert_iso(1757159026.9999998, "2025-09-06T11:43:47.000000");
    assert_iso(1757203199.9999996, "2025-09-07T00:00:00.000000");
    /* .999999 (as a double, .9999990463) rounds down and stays in its second */
    assert_iso(1757159026.999999, "2025-09-06T11:43:46.999999");
    /* rounding, not truncation, below the boundary too (.4999996 is 499999.52 µs as a double) */
    assert_iso(1757159026.4999996, "2025-09-06T11:43:46.500000");
    /* never prints a seven-digit fraction */
    char out[64];
    assert_int_equal(time_format_iso(1757159026.99999999, out, sizeof out), 26);
    assert_string_equal(out, "2025-09-06T11:43:47.000000");
}

static void test_other_zone(void **state)
{
    (void)state;
    if (access("/usr/share/zoneinfo/Europe/Moscow", R_OK) != 0) {
        skip();
    }
    set_tz("Europe/Moscow"); /* UTC+3, no DST since 2014 */
    assert_iso(1757159026.198319, "2025-09-06T14:43:46.198319");
    assert_iso(1757192399.9999996, "2025-09-07T00:00:00.000000"); /* 20:59:59 UTC + rollover */
    set_tz("UTC");
    assert_iso(1757159026.198319, "2025-09-06T11:43:46.198319");
}

static void test_fixed_offset_zone(void **state)
{
    (void)state;
    /* POSIX TZ string, needs no zoneinfo: 5 hours west of UTC */
    set_tz("EST5");
    assert_iso(1757159026.198319, "2025-09-06T06:43:46.198319");
    set_tz("UTC");
}

static void test_truncation(void **state)
{
    (void)state;
    char out[27];
    assert_int_equal(time_format_iso(1757159026.198319, out, sizeof out), 26);
    assert_string_equal(out, "2025-09-06T11:43:46.198319");
    char small[11];
    memset(small, 'X', sizeof small);
    size_t n = time_format_iso(1757159026.198319, small, sizeof small);
    assert_int_equal(n, 10);
    assert_string_equal(small, "2025-09-06");
}

static void test_clocks(void **state)
{
    (void)state;
    double m1 = time_mono_now();
    double r1 = time_real_now();
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    double m2 = time_mono_now();
    double r2 = time_real_now();
    assert_true(m2 - m1 >= 0.002);
    assert_true(m2 - m1 < 5.0);
    assert_true(r1 > 1.7e9); /* after 2023 */
    assert_true(r2 >= r1);
    time_t now = time(NULL);
    assert_true(r2 - (double)now < 2.0 && (double)now - r2 < 2.0);
}

/* time_format_seconds must agree with printf's "%.3f" across magnitudes and signs. */
static void test_format_seconds_matches_printf(void **state)
{
    (void)state;
    const double values[] = {0,       0.0004,    0.0005,     0.001,  7.36,    7.3649,
                             59.9996, 1234.5678, 1e9 + 0.25, -0.001, -3.2105, 86399.9994};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char ours[32], theirs[32];
        size_t n = time_format_seconds(values[i], ours);
        snprintf(theirs, sizeof theirs, "%.3f", values[i]);
        assert_string_equal(ours, theirs);
        assert_int_equal(n, strlen(theirs));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_spec_example_utc, use_utc),
        cmocka_unit_test_setup(test_rounding_rolls_over, use_utc),
        cmocka_unit_test_setup(test_other_zone, use_utc),
        cmocka_unit_test_setup(test_fixed_offset_zone, use_utc),
        cmocka_unit_test_setup(test_truncation, use_utc),
        cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_format_seconds_matches_printf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
