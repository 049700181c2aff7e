/*
 * Unit tests for src/cache/store: look-ups and references, seq ordering of puts, remove, sweep,
 * positive-only counting and iteration, the full-refresh table swap that carries newer entries
 * over, and readers on other threads racing a writer (ASan catches use-after-free and leaks).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "cache/store.h"

/* A positive entry expiring at mono time `expires`. */
static struct cache_entry *pos(const char *number, uint64_t seq, double expires)
{
    const struct entry_clock clk = entry_clock_at(1757159026.0, 0.0, expires);
    const char *why = NULL;
    const char *config = "{\"ms\": {\"enabled\": true}}";
    struct cache_entry *e =
        entry_build(number, config, strlen(config), 4096, &clk, seq, NULL, &why);
    if (!e)
        fail_msg("entry_build(%s): %s", number, why);
    return e;
}

static struct cache_entry *neg(const char *number, uint64_t seq, double expires)
{
    return entry_new_negative(number, 0.0, expires, seq);
}

static unsigned refs(const struct cache_entry *e)
{
    return atomic_load(&((struct cache_entry *)e)->refs);
}

/* Looks `number` up and returns the entry's seq, or 0 when absent (tests never use seq 0). */
static uint64_t seq_of(struct cache_store *s, const char *number)
{
    struct cache_entry *e = cache_get_ref(s, number);
    if (!e)
        return 0;
    assert_string_equal(e->number, number);
    uint64_t seq = e->seq;
    entry_unref(e);
    return seq;
}

static void test_get_empty(void **state)
{
    (void)state;
    struct cache_store *s = cache_store_new();
    assert_null(cache_get_ref(s, "0367"));
    assert_null(cache_get_ref(s, ""));
    assert_int_equal(cache_count(s), 0);
    cache_store_free(s);
}

static void test_put_get(void **state)
{
    (void)state;
    struct cache_store *s = cache_store_new();
    struct cache_entry *e = pos("0367", 1, 90);
    cache_put(s, e); /* the table now holds the only reference */
    assert_int_equal(refs(e), 1);
    struct cache_entry *got = cache_get_ref(s, "0367");
    assert_ptr_equal(got, e);
    assert_int_equal(refs(e), 2);
    struct cache_entry *again = cache_get_ref(s, "0367");
    assert_ptr_equal(again, e);
    assert_int_equal(refs(e), 3);
    entry_unref(again);
    entry_unref(got);
    assert_int_equal(refs(e), 1);
    assert_null(cache_get_ref(s, "0368"));
    assert_null(cache_get_ref(s, "036"));
    assert_int_equal(cache_count(s), 1);
    cache_store_free(s);
}

static void test_put_seq_order(void **state)
{
    (void)state;
    struct cache_store *s = cache_store_new();
    cache_put(s, pos("0367", 5, 90));
    cache_put(s, pos("0367", 3, 90)); /* older load: dropped, old stays */
    assert_int_equal(seq_of(s, "0367"), 5);
    assert_int_equal(cache_count(s), 1);
    cache_put(s, neg("0367", 4, 90)); /* an older "not served" must not hide a newer entry */
    assert_int_equal(seq_of(s, "0367"), 5);
    assert_int_equal(cache_count(s), 1);

    /* a reader holding the old entry keeps it alive while a newer one replaces it */
    struct cache_entry *held = cache_get_ref(s, "0367");
    cache_put(s, pos("0367", 9, 90));
    assert_int_equal(seq_of(s, "0367"), 9);
    assert_int_equal(cache_count(s), 1);
    assert_int_equal(held->seq, 5);
    assert_string_equal(held->number, "0367");
    entry_unref(held);

    /* the same seq replaces (only a strictly newer entry is kept over the incoming one) */
    struct cache_entry *same = pos("0367", 9, 90);
    cache_put(s, same);
    struct cache_entry *got = cache_get_ref(s, "0367");
    assert_ptr_equal(got, same);
    entry_unref(got);
    cache_store_free(s);
}

static void test_remove(void **state)
{
    (void)state;
    struct cache_store *s = cache_store_new();
    cache_put(s, pos("a", 1, 90));
    cache_put(s, pos("b", 1, 90));
    cache_put(s, neg("c", 1, 90));
    assert_int_equal(cache_count(s), 2);
    struct cache_entry *held = cache_get_ref(s, "a");
    cache_remove(s, "a");
    assert_null(cache_get_ref(s, "a"));
    assert_int_equal(seq_of(s, "b"), 1);
    assert_int_equal(cache_count(s), 1);
    assert_string_equal(held->number, "a"); /* still valid for its holder */
    entry_unref(held);
    cache_remove(s, "a"); /* absent: no-op */
    cache_remove(s, "zzz");
    cache_remove(s, "c");
    assert_null(cache_get_ref(s, "c"));
    assert_int_equal(cache_count(s), 1);
    cache_remove(s, "b");
    assert_int_equal(cache_count(s), 0);
    /* a removed number can be cached again */
    cache_put(s, pos("a", 2, 90));
    assert_int_equal(seq_of(s, "a"), 2);
    cache_store_free(s);
}

static void test_sweep(void **state)
{
    (void)state;
    struct cache_store *s = cache_store_new();
    cache_put(s, pos("e10", 1, 10));
    cache_put(s, pos("e20", 1, 20));
    cache_put(s, pos("e30", 1, 30));
    cache_put(s, neg("n12", 1, 12));
    cache_put(s, neg("n40", 1, 40));
    assert_int_equal(cache_sweep(s, 5), 0);
    assert_int_equal(cache_sweep(s, 15), 2); /* e10 and n12 */
    assert_null(cache_get_ref(s, "e10"));
    assert_null(cache_get_ref(s, "n12"));
    assert_int_equal(seq_of(s, "e20"), 1);
    assert_int_equal(seq_of(s, "e30"), 1);
    assert_int_equal(seq_of(s, "n40"), 1);
    assert_int_equal(cache_count(s), 2);
    assert_int_equal(cache_sweep(s, 15), 0);
    assert_int_equal(cache_sweep(s, 20), 1); /* expiry is at, not after, expires_mono */
    assert_int_equal(cache_count(s), 1);
    assert_int_equal(cache_sweep(s, 1000), 2);
    assert_int_equal(cache_count(s), 0);
    assert_null(cache_get_ref(s, "n40"));
    cache_store_free(s);
}

static void test_sweep_many(void **state)
{
    (void)state;
    /* more entries than the initial table size, so removal during iteration crosses buckets */
    struct cache_store *s = cache_store_new();
    char num[16];
    for (int i = 0; i < 3000; i++) {
        snprintf(num, sizeof num, "%d", i);
        cache_put(s, pos(num, 1, i % 3 == 0 ? 10 : 100));
    }
    assert_int_equal(cache_count(s), 3000);
    assert_int_equal(cache_sweep(s, 50), 1000);
    assert_int_equal(cache_count(s), 2000);
    for (int i = 0; i < 3000; i++) {
        snprintf(num, sizeof num, "%d", i);
        assert_int_equal(seq_of(s, num), i % 3 == 0 ? 0 : 1);
    }
    cache_store_free(s);
}

static void test_count_positive_only(void **state)
{
    (void)state;
    struct cache_store *s = cache_store_new();
    cache_put(s, pos("p1", 1, 90));
    cache_put(s, pos("p2", 1, 90));
    cache_put(s, pos("p3", 1, 90));
    cache_put(s, neg("n1", 1, 90));
    cache_put(s, neg("n2", 1, 90));
    assert_int_equal(cache_count(s), 3);
    cache_put(s, neg("p1", 2, 90)); /* positive -> negative */
    assert_int_equal(cache_count(s), 2);
    cache_put(s, pos("n1", 2, 90)); /* negative -> positive */
    assert_int_equal(cache_count(s), 3);
    cache_put(s, pos("p2", 2, 90)); /* positive -> positive */
    assert_int_equal(cache_count(s), 3);
    cache_remove(s, "n2");
    assert_int_equal(cache_count(s), 3);
    cache_store_free(s);
}

struct visit {
    int n;
    char seen[16][PARAM_MAX_LEN + 1];
    bool negative_seen;
};

static void collect(const struct cache_entry *e, void *ctx)
{
    struct visit *v = ctx;
    if (e->negative)
        v->negative_seen = true;
    if (v->n < 16)
        snprintf(v->seen[v->n], sizeof v->seen[0], "%s", e->number);
    v->n++;
}

static bool visited(const struct visit *v, const char *number)
{
    for (int i = 0; i < v->n && i < 16; i++)
        if (strcmp(v->seen[i], number) == 0)
            return true;
    return false;
}

static void test_foreach(void **state)
{
    (void)state;
    struct cache_store *s = cache_store_new();
    struct visit v = {0};
    cache_foreach(s, collect, &v);
    assert_int_equal(v.n, 0);
    cache_put(s, pos("p1", 1, 90));
    cache_put(s, neg("n1", 1, 90));
    cache_put(s, pos("p2", 1, 90));
    cache_put(s, neg("n2", 1, 90));
    cache_foreach(s, collect, &v);
    assert_int_equal(v.n, 2);
    assert_false(v.negative_seen);
    assert_true(visited(&v, "p1"));
    assert_true(visited(&v, "p2"));
    cache_store_free(s);
}

/* The same outcome whether the swap finds what to carry by walking the old table (no record) or
 * from the record that cache_carry_from started. */
static void swap_scenario(bool recorded)
{
    struct cache_store *s = cache_store_new();
    /* the refresh query was sent at seq 10; its rows carry seq 10 */
    if (recorded)
        cache_carry_from(s, 10);
    cache_put(s, pos("A", 3, 90));  /* older than the refresh: replaced by its row */
    cache_put(s, pos("B", 12, 90)); /* loaded after the refresh was sent: carried, wins */
    cache_put(s, pos("C", 15, 90)); /* newer and not in the refresh: carried */
    cache_put(s, neg("D", 20, 90)); /* a newer "not served": carried */
    cache_put(s, pos("F", 5, 90));  /* older and no longer served: gone */
    cache_put(s, pos("G", 10, 90)); /* loaded at exactly since_seq: not carried */
    struct cache_entry *old_a = cache_get_ref(s, "A");

    struct cache_table *t = cache_table_new(4);
    cache_table_add(t, pos("A", 10, 90));
    cache_table_add(t, pos("B", 10, 90));
    cache_table_add(t, pos("E", 10, 90));
    cache_table_add(t, neg("H", 10, 90));
    /* not visible before the swap */
    assert_null(cache_get_ref(s, "E"));
    assert_int_equal(cache_count(s), 5);

    size_t n = cache_swap(s, t, 10);
    assert_int_equal(n, 4); /* A, B, C, E: positive entries of the new table */
    assert_int_equal(cache_count(s), 4);
    assert_int_equal(seq_of(s, "A"), 10);
    assert_int_equal(seq_of(s, "B"), 12);
    assert_int_equal(seq_of(s, "C"), 15);
    assert_int_equal(seq_of(s, "D"), 20);
    assert_int_equal(seq_of(s, "E"), 10);
    assert_int_equal(seq_of(s, "H"), 10);
    assert_int_equal(seq_of(s, "F"), 0);
    assert_int_equal(seq_of(s, "G"), 0);
    struct cache_entry *d = cache_get_ref(s, "D");
    assert_non_null(d);
    assert_true(d->negative);
    entry_unref(d);

    /* a reader that held an entry of the old table keeps it */
    cache_store_settle(s); /* the old table is freed by the reaper thread */
    assert_int_equal(old_a->seq, 3);
    assert_string_equal(old_a->number, "A");
    assert_int_equal(refs(old_a), 1);
    entry_unref(old_a);

    /* writes go to the new table */
    cache_put(s, pos("X", 30, 90));
    cache_remove(s, "C");
    assert_int_equal(seq_of(s, "X"), 30);
    assert_int_equal(seq_of(s, "C"), 0);
    assert_int_equal(cache_count(s), 4);
    struct visit v = {0};
    cache_foreach(s, collect, &v);
    assert_int_equal(v.n, 4);
    assert_true(visited(&v, "A") && visited(&v, "B") && visited(&v, "E") && visited(&v, "X"));
    cache_store_free(s);
}

static void test_swap(void **state)
{
    (void)state;
    swap_scenario(false);
}

static void test_swap_recorded(void **state)
{
    (void)state;
    swap_scenario(true);
}

static void test_swap_recorded_follows_later_writes(void **state)
{
    (void)state;
    /* an entry on record is carried only while it is still the old table's */
    struct cache_store *s = cache_store_new();
    cache_carry_from(s, 10);
    struct cache_entry *b1 = pos("B", 12, 90);
    cache_put(s, b1);
    cache_put(s, pos("B", 14, 90)); /* replaced: the newer one is carried */
    cache_put(s, pos("C", 15, 90));
    cache_remove(s, "C");            /* invalidated after its load: not carried */
    cache_put(s, pos("D", 16, 1.0)); /* expired and swept: not carried */
    cache_put(s, pos("E", 17, 90));
    cache_put(s, pos("E", 11, 90)); /* older than E's entry: dropped, not on record */
    assert_int_equal(cache_sweep(s, 2.0), 1);
    struct cache_table *t = cache_table_new(4);
    cache_table_add(t, pos("C", 10, 90));
    assert_int_equal(cache_swap(s, t, 10), 3); /* B, C (the refresh's), E */
    assert_int_equal(seq_of(s, "B"), 14);
    assert_int_equal(seq_of(s, "C"), 10);
    assert_int_equal(seq_of(s, "D"), 0);
    assert_int_equal(seq_of(s, "E"), 17);
    cache_store_free(s);
}

static void test_swap_record_overflow_walks(void **state)
{
    (void)state;
    /* more loads during one refresh than the record holds: the swap still carries every one */
    enum { N = 70000 };
    struct cache_store *s = cache_store_new();
    cache_carry_from(s, 10);
    char number[16];
    for (int i = 0; i < N; i++) {
        snprintf(number, sizeof number, "%d", 100000 + i);
        cache_put(s, neg(number, 11 + (uint64_t)i, 90));
    }
    assert_int_equal(cache_swap(s, cache_table_new(N), 10), 0); /* all negative */
    assert_int_equal(seq_of(s, "100000"), 11);
    assert_int_equal(seq_of(s, "169999"), 11 + N - 1);
    struct cache_entry *last = cache_get_ref(s, "169999");
    assert_non_null(last);
    entry_unref(last);
    cache_store_free(s);
}

static void test_swap_record_stopped(void **state)
{
    (void)state;
    /* a failed refresh drops the record (and its references); the next swap walks */
    struct cache_store *s = cache_store_new();
    cache_carry_from(s, 10);
    struct cache_entry *b = pos("B", 12, 90);
    cache_put(s, b);
    assert_int_equal(refs(b), 2); /* the table and the record */
    cache_carry_stop(s);
    assert_int_equal(refs(b), 1);
    assert_int_equal(cache_swap(s, cache_table_new(0), 10), 1);
    assert_int_equal(seq_of(s, "B"), 12);
    cache_store_free(s);
}

static void test_swap_carried_entry_shared(void **state)
{
    (void)state;
    /* a carried entry is the same object, now referenced by the new table only */
    struct cache_store *s = cache_store_new();
    struct cache_entry *b = pos("B", 12, 90);
    cache_put(s, b);
    cache_swap(s, cache_table_new(0), 10);
    cache_store_settle(s);
    struct cache_entry *got = cache_get_ref(s, "B");
    assert_ptr_equal(got, b);
    assert_int_equal(refs(b), 2); /* new table + us: the old table's reference was released */
    entry_unref(got);
    /* an empty refresh with nothing newer empties the cache */
    assert_int_equal(cache_swap(s, cache_table_new(0), 100), 0);
    assert_null(cache_get_ref(s, "B"));
    assert_int_equal(cache_count(s), 0);
    cache_store_free(s);
}

static void test_swap_newer_table_entry_wins(void **state)
{
    (void)state;
    /* a carried entry is newer than the refresh, but if the new table already holds an even newer
     * entry for that number, the newer one stays: a write never replaces newer with older */
    struct cache_store *s = cache_store_new();
    cache_put(s, pos("B", 12, 90));
    struct cache_table *t = cache_table_new(0);
    cache_table_add(t, pos("B", 20, 90));
    assert_int_equal(cache_swap(s, t, 10), 1);
    assert_int_equal(seq_of(s, "B"), 20);
    cache_store_free(s);
}

static void test_table_free_unused(void **state)
{
    (void)state;
    struct cache_table *t = cache_table_new(10);
    cache_table_add(t, pos("A", 1, 90));
    cache_table_add(t, neg("B", 1, 90));
    cache_table_free(t); /* ASan reports the entries if they leak */
    cache_table_free(NULL);
}

/* --- readers racing one writer --- */

#define RACE_NUMBERS 64
#define RACE_ITERATIONS 100000

struct race {
    struct cache_store *store;
    atomic_bool stop;
    atomic_long reads, hits, bad;
    atomic_uint next_start;
};

static char race_numbers[RACE_NUMBERS][8];

static void *race_reader(void *arg)
{
    struct race *r = arg;
    unsigned i = atomic_fetch_add(&r->next_start, 17); /* a different starting point per thread */
    while (!atomic_load(&r->stop)) {
        const char *num = race_numbers[i++ % RACE_NUMBERS];
        struct cache_entry *e = cache_get_ref(r->store, num);
        atomic_fetch_add(&r->reads, 1);
        if (!e)
            continue;
        atomic_fetch_add(&r->hits, 1);
        if (strcmp(e->number, num) != 0 || atomic_load(&e->refs) < 1)
            atomic_fetch_add(&r->bad, 1);
        entry_unref(e);
    }
    return NULL;
}

static void test_concurrent_readers(void **state)
{
    (void)state;
    for (int i = 0; i < RACE_NUMBERS; i++)
        snprintf(race_numbers[i], sizeof race_numbers[i], "r%d", i);
    struct race r = {.store = cache_store_new()};
    atomic_init(&r.stop, false);
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, race_reader, &r), 0);

    uint64_t seq = 1;
    for (int i = 0; i < RACE_ITERATIONS; i++) {
        const char *num = race_numbers[(i * 7) % RACE_NUMBERS];
        switch (i % 5) {
        case 0:
        case 1: {
            struct cache_entry *e = neg(num, seq++, 90);
            e->negative = (i % 2) == 0; /* half positive, without the cost of a JSON parse */
            cache_put(r.store, e);
            break;
        }
        case 2:
            cache_put(r.store, neg(num, 0, 90)); /* stale: dropped unless the number is absent */
            break;
        case 3:
            cache_remove(r.store, num);
            break;
        case 4:
            if (i % 25000 == 4) { /* an occasional full refresh */
                struct cache_table *t = cache_table_new(RACE_NUMBERS);
                for (int k = 0; k < RACE_NUMBERS; k += 2)
                    cache_table_add(t, neg(race_numbers[k], seq, 90));
                cache_swap(r.store, t, seq++);
            }
            break;
        }
    }
    /* the table is not empty now: give the readers a moment to hit it so the check below is
     * never vacuous (bounded; normally they already have) */
    for (int spins = 0; atomic_load(&r.hits) == 0 && spins < 1000; spins++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    atomic_store(&r.stop, true);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);

    assert_int_equal(atomic_load(&r.bad), 0);
    assert_true(atomic_load(&r.hits) > 0);
    /* the live count agrees with what iteration sees */
    struct visit v = {0};
    cache_foreach(r.store, collect, &v);
    assert_int_equal((size_t)v.n, cache_count(r.store));
    assert_false(v.negative_seen);
    cache_store_free(r.store);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_empty),
        cmocka_unit_test(test_put_get),
        cmocka_unit_test(test_put_seq_order),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_sweep),
        cmocka_unit_test(test_sweep_many),
        cmocka_unit_test(test_count_positive_only),
        cmocka_unit_test(test_foreach),
        cmocka_unit_test(test_swap),
        cmocka_unit_test(test_swap_recorded),
        cmocka_unit_test(test_swap_recorded_follows_later_writes),
        cmocka_unit_test(test_swap_record_overflow_walks),
        cmocka_unit_test(test_swap_record_stopped),
        cmocka_unit_test(test_swap_carried_entry_shared),
        cmocka_unit_test(test_swap_newer_table_entry_wins),
        cmocka_unit_test(test_table_free_unused),
        cmocka_unit_test(test_concurrent_readers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
