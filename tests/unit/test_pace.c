/*
 * Unit tests for src/util/pace: the interval follows the last run's duration times the factor,
 * clamped to [min, max].
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/pace.h"

static void test_quick_runs_keep_the_minimum(void **state)
{
    (void)state;
    assert_float_equal(pace_interval(0.001, 200, 2, 60), 2.0, 1e-9);
    assert_float_equal(pace_interval(0, 200, 2, 60), 2.0, 1e-9);
}

static void test_slow_runs_are_spaced_by_the_factor(void **state)
{
    (void)state;
    assert_float_equal(pace_interval(0.05, 200, 2, 60), 10.0, 1e-9);
    assert_float_equal(pace_interval(0.127, 200, 2, 60), 25.4, 1e-9);
}

static void test_spacing_stops_at_the_maximum(void **state)
{
    (void)state;
    assert_float_equal(pace_interval(1.0, 200, 2, 60), 60.0, 1e-9);
    assert_float_equal(pace_interval(30.0, 200, 2, 60), 60.0, 1e-9);
}

static void test_negative_duration_is_treated_as_none(void **state)
{
    (void)state; /* a clock step backwards must not make the count run back to back */
    assert_float_equal(pace_interval(-5.0, 200, 2, 60), 2.0, 1e-9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quick_runs_keep_the_minimum),
        cmocka_unit_test(test_slow_runs_are_spaced_by_the_factor),
        cmocka_unit_test(test_spacing_stops_at_the_maximum),
        cmocka_unit_test(test_negative_duration_is_treated_as_none),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
