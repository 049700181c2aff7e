/*
 * Unit tests for src/dispatch/breaker, the per-target circuit breaker of SPEC §6.2: closed lets
 * everything through, `threshold` consecutive failures open it, the cooldown passes to a single
 * half-open probe, and failed probes double the cooldown up to 16 times the base.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "dispatch/breaker.h"

#define T0 1000.0
#define COOLDOWN 10.0

static void test_closed_allows_want(void **state)
{
    (void)state;
    struct breaker b;
    breaker_init(&b, 3, COOLDOWN);
    assert_int_equal(b.state, BREAKER_CLOSED);
    assert_int_equal(breaker_allow(&b, T0, 0), 0);
    assert_int_equal(breaker_allow(&b, T0, 1), 1);
    assert_int_equal(breaker_allow(&b, T0, 7), 7);
    assert_int_equal(breaker_allow(&b, T0, 1000), 1000);
    assert_int_equal(b.state, BREAKER_CLOSED);
}

static void test_opens_after_threshold(void **state)
{
    (void)state;
    struct breaker b;
    breaker_init(&b, 3, COOLDOWN);
    breaker_failure(&b, T0);
    breaker_failure(&b, T0);
    assert_int_equal(b.state, BREAKER_CLOSED); /* two of three: still closed */
    assert_int_equal(breaker_allow(&b, T0, 5), 5);
    breaker_failure(&b, T0);
    assert_int_equal(b.state, BREAKER_OPEN);
    assert_int_equal(breaker_allow(&b, T0, 5), 0);
}

/* The claim asks the state without taking the probe: the cooldown's end turns open into
 * half-open, and the probe is still there for the first breaker_allow. */
static void test_state_at_takes_no_probe(void **state)
{
    (void)state;
    struct breaker b;
    breaker_init(&b, 1, COOLDOWN);
    breaker_failure(&b, T0);
    assert_int_equal(breaker_state_at(&b, T0 + COOLDOWN - 0.001), BREAKER_OPEN);
    assert_int_equal(breaker_state_at(&b, T0 + COOLDOWN), BREAKER_HALF_OPEN);
    assert_int_equal(breaker_state_at(&b, T0 + COOLDOWN), BREAKER_HALF_OPEN);
    assert_false(b.probing);
    assert_int_equal(breaker_allow(&b, T0 + COOLDOWN, 3), 1);
    assert_true(b.probing);
    assert_int_equal(breaker_state_at(&b, T0 + COOLDOWN), BREAKER_HALF_OPEN);
    breaker_success(&b);
    assert_int_equal(breaker_state_at(&b, T0 + COOLDOWN), BREAKER_CLOSED);
}

static void test_success_resets_count(void **state)
{
    (void)state;
    struct breaker b;
    breaker_init(&b, 3, COOLDOWN);
    breaker_failure(&b, T0);
    breaker_failure(&b, T0);
    breaker_success(&b);
    breaker_failure(&b, T0);
    breaker_failure(&b, T0);
    assert_int_equal(b.state, BREAKER_CLOSED); /* not consecutive: 2 + 2 */
    assert_int_equal(breaker_allow(&b, T0, 4), 4);
    breaker_failure(&b, T0);
    assert_int_equal(b.state, BREAKER_OPEN);
}

static void test_threshold_one(void **state)
{
    (void)state;
    struct breaker b;
    breaker_init(&b, 1, COOLDOWN);
    breaker_failure(&b, T0);
    assert_int_equal(b.state, BREAKER_OPEN);
}

/* Opens b (threshold 2) at time t. */
static void open_at(struct breaker *b, double t)
{
    breaker_init(b, 2, COOLDOWN);
    breaker_failure(b, t);
    breaker_failure(b, t);
    assert_int_equal(b->state, BREAKER_OPEN);
}

static void test_open_until_cooldown(void **state)
{
    (void)state;
    struct breaker b;
    open_at(&b, T0);
    assert_int_equal(breaker_allow(&b, T0 + 1, 1), 0);
    assert_int_equal(breaker_allow(&b, T0 + COOLDOWN - 0.01, 3), 0);
    assert_int_equal(b.state, BREAKER_OPEN);
    assert_int_equal(breaker_allow(&b, T0 + COOLDOWN, 3), 1); /* half-open: one probe */
    assert_int_equal(b.state, BREAKER_HALF_OPEN);
}

static void test_half_open_one_probe(void **state)
{
    (void)state;
    struct breaker b;
    open_at(&b, T0);
    assert_int_equal(breaker_allow(&b, T0 + COOLDOWN + 1, 1), 1);
    assert_int_equal(breaker_allow(&b, T0 + COOLDOWN + 1, 1), 0); /* the probe is out */
    assert_int_equal(breaker_allow(&b, T0 + COOLDOWN + 50, 8), 0);
    assert_int_equal(b.state, BREAKER_HALF_OPEN);
}

static void test_half_open_want_zero(void **state)
{
    (void)state;
    struct breaker b;
    open_at(&b, T0);
    assert_int_equal(breaker_allow(&b, T0 + COOLDOWN, 0), 0); /* asking for none uses no probe */
    assert_int_equal(breaker_allow(&b, T0 + COOLDOWN, 1), 1);
}

static void test_probe_success_closes(void **state)
{
    (void)state;
    struct breaker b;
    open_at(&b, T0);
    assert_int_equal(breaker_allow(&b, T0 + COOLDOWN, 1), 1);
    breaker_success(&b);
    assert_int_equal(b.state, BREAKER_CLOSED);
    assert_int_equal(breaker_allow(&b, T0 + COOLDOWN, 9), 9);
    /* the failure count starts again from zero */
    breaker_failure(&b, T0 + COOLDOWN);
    assert_int_equal(b.state, BREAKER_CLOSED);
}

static void test_probe_failure_doubles(void **state)
{
    (void)state;
    struct breaker b;
    open_at(&b, T0);
    double t = T0 + COOLDOWN;
    const double want[] = {20, 40, 80, 160, 160, 160}; /* capped at 16 x 10 */
    for (int i = 0; i < 6; i++) {
        assert_int_equal(breaker_allow(&b, t, 1), 1);
        breaker_failure(&b, t);
        assert_int_equal(b.state, BREAKER_OPEN);
        assert_int_equal(breaker_allow(&b, t + want[i] - 0.01, 1), 0);
        assert_int_equal(b.state, BREAKER_OPEN);
        t += want[i];
    }
    /* a success resets the cooldown to the base */
    assert_int_equal(breaker_allow(&b, t, 1), 1);
    breaker_success(&b);
    breaker_failure(&b, t);
    breaker_failure(&b, t);
    assert_int_equal(b.state, BREAKER_OPEN);
    assert_int_equal(breaker_allow(&b, t + COOLDOWN - 0.01, 1), 0);
    assert_int_equal(breaker_allow(&b, t + COOLDOWN, 1), 1);
}

static void test_state_names(void **state)
{
    (void)state;
    assert_string_equal(breaker_state_name(BREAKER_CLOSED), "closed");
    assert_string_equal(breaker_state_name(BREAKER_OPEN), "open");
    assert_string_equal(breaker_state_name(BREAKER_HALF_OPEN), "half-open");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_closed_allows_want),
        cmocka_unit_test(test_opens_after_threshold),
        cmocka_unit_test(test_success_resets_count),
        cmocka_unit_test(test_threshold_one),
        cmocka_unit_test(test_open_until_cooldown),
        cmocka_unit_test(test_half_open_one_probe),
        cmocka_unit_test(test_half_open_want_zero),
        cmocka_unit_test(test_probe_success_closes),
        cmocka_unit_test(test_probe_failure_doubles),
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_state_at_takes_no_probe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
