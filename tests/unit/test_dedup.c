/*
 * Unit tests for src/dispatch/dedup (SPEC §6.3): (uniqueId, event_type) is a duplicate within 60 s
 * for dial and 300 s for hangup, the two types are independent, memory is bounded with the oldest
 * record forgotten first, dedup_forget takes a record back, and concurrent adders lose nothing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <cmocka.h>

#include "dispatch/dedup.h"

#define NOW 1758200248.0

static void test_first_then_duplicate(void **state)
{
    (void)state;
    struct dedup *d = dedup_new(16);
    assert_int_equal(dedup_size(d), 0);
    assert_false(dedup_check_and_add(d, "1758200248.0", "dial", NOW));
    assert_int_equal(dedup_size(d), 1);
    assert_true(dedup_check_and_add(d, "1758200248.0", "dial", NOW));
    assert_true(dedup_check_and_add(d, "1758200248.0", "dial", NOW + 1));
    assert_int_equal(dedup_size(d), 1); /* a duplicate records nothing */
    assert_false(dedup_check_and_add(d, "1758200248.1", "dial", NOW));
    assert_int_equal(dedup_size(d), 2);
    dedup_free(d);
}

static void test_dial_window(void **state)
{
    (void)state;
    struct dedup *d = dedup_new(16);
    assert_false(dedup_check_and_add(d, "a", "dial", NOW));
    assert_true(dedup_check_and_add(d, "a", "dial", NOW + 59));
    assert_false(dedup_check_and_add(d, "a", "dial", NOW + 61));
    /* recorded again at +61: a duplicate for the next 60 s from there */
    assert_true(dedup_check_and_add(d, "a", "dial", NOW + 61 + 59));
    assert_false(dedup_check_and_add(d, "a", "dial", NOW + 61 + 61));
    dedup_free(d);
}

static void test_hangup_window(void **state)
{
    (void)state;
    struct dedup *d = dedup_new(16);
    assert_false(dedup_check_and_add(d, "a", "hangup", NOW));
    assert_true(dedup_check_and_add(d, "a", "hangup", NOW + 61));
    assert_true(dedup_check_and_add(d, "a", "hangup", NOW + 299));
    assert_false(dedup_check_and_add(d, "a", "hangup", NOW + 301));
    dedup_free(d);
}

static void test_types_independent(void **state)
{
    (void)state;
    struct dedup *d = dedup_new(16);
    assert_false(dedup_check_and_add(d, "a", "dial", NOW));
    assert_false(dedup_check_and_add(d, "a", "hangup", NOW));
    assert_true(dedup_check_and_add(d, "a", "dial", NOW + 1));
    assert_true(dedup_check_and_add(d, "a", "hangup", NOW + 1));
    dedup_forget(d, "a", "dial");
    assert_true(dedup_check_and_add(d, "a", "hangup", NOW + 2)); /* untouched by the dial's */
    assert_false(dedup_check_and_add(d, "a", "dial", NOW + 2));
    dedup_free(d);
}

static void test_capacity_bound(void **state)
{
    (void)state;
    struct dedup *d = dedup_new(4);
    const char *ids[] = {"id0", "id1", "id2", "id3", "id4"};
    for (int i = 0; i < 5; i++) {
        assert_false(dedup_check_and_add(d, ids[i], "dial", NOW + i));
        assert_true(dedup_size(d) <= 4);
    }
    assert_int_equal(dedup_size(d), 4);
    /* id1..id4 are still remembered */
    for (int i = 1; i < 5; i++)
        assert_true(dedup_check_and_add(d, ids[i], "dial", NOW + 5));
    /* id0, the oldest, was forgotten: new again (and it evicts id1) */
    assert_false(dedup_check_and_add(d, "id0", "dial", NOW + 5));
    assert_true(dedup_size(d) <= 4);
    assert_true(dedup_check_and_add(d, "id0", "dial", NOW + 6));
    assert_false(dedup_check_and_add(d, "id1", "dial", NOW + 6));
    dedup_free(d);
}

/* A record refreshed after its window has passed is the newest one: it is not the next to go. */
static void test_refreshed_record_not_oldest(void **state)
{
    (void)state;
    struct dedup *d = dedup_new(2);
    assert_false(dedup_check_and_add(d, "a", "dial", NOW));
    assert_false(dedup_check_and_add(d, "b", "dial", NOW + 30));
    assert_false(dedup_check_and_add(d, "a", "dial", NOW + 70)); /* window over: recorded anew */
    assert_false(dedup_check_and_add(d, "c", "dial", NOW + 71)); /* evicts b, the oldest */
    bool a_dup = dedup_check_and_add(d, "a", "dial", NOW + 72);  /* 2 s old: a duplicate */
    bool c_dup = dedup_check_and_add(d, "c", "dial", NOW + 72);
    dedup_free(d); /* before the asserts, which do not return when they fail */
    assert_true(a_dup);
    assert_true(c_dup);
}

static void test_forget(void **state)
{
    (void)state;
    struct dedup *d = dedup_new(8);
    assert_false(dedup_check_and_add(d, "a", "dial", NOW));
    assert_false(dedup_check_and_add(d, "b", "dial", NOW));
    dedup_forget(d, "a", "dial");
    assert_false(dedup_check_and_add(d, "a", "dial", NOW + 1));
    assert_true(dedup_check_and_add(d, "a", "dial", NOW + 2));
    assert_true(dedup_check_and_add(d, "b", "dial", NOW + 2)); /* others kept */
    dedup_forget(d, "never-seen", "hangup");                   /* a no-op */
    assert_true(dedup_check_and_add(d, "b", "dial", NOW + 3));
    dedup_free(d);
}

/* Forgotten records still occupy ring slots until they age out; the bound still holds. */
static void test_forget_keeps_bound(void **state)
{
    (void)state;
    struct dedup *d = dedup_new(3);
    char id[16];
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "f%d", i);
        assert_false(dedup_check_and_add(d, id, "hangup", NOW + i));
        if (i % 2)
            dedup_forget(d, id, "hangup");
        assert_true(dedup_size(d) <= 3);
    }
    assert_true(dedup_check_and_add(d, "f18", "hangup", NOW + 20));
    assert_false(dedup_check_and_add(d, "f19", "hangup", NOW + 20)); /* forgotten */
    dedup_free(d);
}

#define THREADS 4
#define PER_THREAD 10000

struct worker {
    struct dedup *d;
    int n;
    int duplicates; /* first adds that were wrongly reported as duplicates */
};

static void *add_ids(void *arg)
{
    struct worker *w = arg;
    char id[32];
    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(id, sizeof id, "t%d-%d", w->n, i);
        if (dedup_check_and_add(w->d, id, i % 2 ? "hangup" : "dial", NOW))
            w->duplicates++;
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    struct dedup *d = dedup_new(THREADS * PER_THREAD);
    pthread_t th[THREADS];
    struct worker w[THREADS];
    for (int t = 0; t < THREADS; t++) {
        w[t] = (struct worker){.d = d, .n = t};
        assert_int_equal(pthread_create(&th[t], NULL, add_ids, &w[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        assert_int_equal(pthread_join(th[t], NULL), 0);
        assert_int_equal(w[t].duplicates, 0);
    }
    assert_int_equal(dedup_size(d), THREADS * PER_THREAD);
    char id[32];
    int missing = 0;
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < PER_THREAD; i++) {
            snprintf(id, sizeof id, "t%d-%d", t, i);
            if (!dedup_check_and_add(d, id, i % 2 ? "hangup" : "dial", NOW + 1))
                missing++;
        }
    assert_int_equal(missing, 0);
    dedup_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_then_duplicate),
        cmocka_unit_test(test_dial_window),
        cmocka_unit_test(test_hangup_window),
        cmocka_unit_test(test_types_independent),
        cmocka_unit_test(test_capacity_bound),
        cmocka_unit_test(test_refreshed_record_not_oldest),
        cmocka_unit_test(test_forget),
        cmocka_unit_test(test_forget_keeps_bound),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
