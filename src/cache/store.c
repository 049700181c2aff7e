/*
 * RCU hash table of entries (see store.h). One table object is current at a time
 * (`store->current`, published with rcu_assign_pointer); readers look up inside
 * rcu_read_lock() and take a reference before leaving it. Removal unlinks the node and defers
 * dropping the table's reference with call_rcu, so a reader still walking the chain stays safe.
 */
#include "cache/store.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/rcu.h"
#include "util/xalloc.h"

struct cache_table {
    struct cds_lfht *ht;
    struct cds_lfht *tokens; /* dispatch token (name2 or secret) -> enterprise number */
    atomic_size_t positive;  /* entries that are not negative */
    atomic_size_t all;
    uint64_t newest_seq;           /* the largest seq ever put; only the writer reads it */
    struct cache_table *next_dead; /* on the store's graveyard */
};

struct cache_store {
    struct cache_table *current;
    /* Replaced tables wait here for the reaper thread, which lets a grace period pass and frees
     * them: destroying a table of 100k entries takes hundreds of milliseconds (measured: 70% of
     * a refresh), which the I/O thread must not spend while notifications wait. */
    pthread_t reaper;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct cache_table *graveyard;
    unsigned long buried, reaped; /* tables handed to the reaper, tables it has freed */
    unsigned long buried_then;    /* `buried` when the reaper took the graveyard */
    pthread_cond_t done;
    bool stopping;
    /* Entries put while a refresh builds its table (cache_carry_from): what the swap carries over,
     * found without walking the whole old table. I/O thread only. */
    struct {
        bool on;
        uint64_t since_seq;
        struct cache_entry **v;
        size_t n, cap;
    } carry;
};

/* Loads during one refresh are bounded by the database's pace, but a refresh that streams for
 * minutes must not pin entries without limit: past this many, the swap walks the table instead. */
#define CARRY_MAX 65536

/* Table linkage is separate from the entry, so one entry can sit in the old and the new table
 * while a refresh carries it over. A node holds one reference to its entry. */
struct cache_node {
    struct cds_lfht_node node;
    struct rcu_head rcu;
    struct cache_entry *entry;
};

#define NODE(n) caa_container_of(n, struct cache_node, node)

/* token -> number; kept apart from entries so a token outlives its entry's TTL */
struct token_node {
    struct cds_lfht_node node;
    struct rcu_head rcu;
    char number[PARAM_MAX_LEN + 1];
    char token[];
};

#define TOKEN(n) caa_container_of(n, struct token_node, node)

static uint64_t hash_number(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a, 64 bit */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static int match_number(struct cds_lfht_node *node, const void *key)
{
    return strcmp(NODE(node)->entry->number, key) == 0;
}

static int match_token(struct cds_lfht_node *node, const void *key)
{
    return strcmp(TOKEN(node)->token, key) == 0;
}

static void free_token_rcu(struct rcu_head *head)
{
    free(caa_container_of(head, struct token_node, rcu));
}

/* Maps token to number in t (replacing another mapping of the token). Inside a read section.
 * One traversal in the usual cases: add_unique either adds or finds the current mapping. */
static void token_put(struct cache_table *t, const char *token, const char *number)
{
    if (!token || !*token || strlen(token) > ENTRY_MAX_TOKEN)
        return;
    uint64_t h = hash_number(token);
    size_t len = strlen(token);
    struct token_node *n = xmalloc(sizeof *n + len + 1);
    memcpy(n->token, token, len + 1);
    snprintf(n->number, sizeof n->number, "%s", number);
    struct cds_lfht_node *found = cds_lfht_add_unique(t->tokens, h, match_token, token, &n->node);
    if (found == &n->node)
        return;
    if (strcmp(TOKEN(found)->number, number) == 0) {
        free(n); /* already mapped so */
        return;
    }
    struct cds_lfht_node *old = cds_lfht_add_replace(t->tokens, h, match_token, token, &n->node);
    if (old)
        call_rcu(&TOKEN(old)->rcu, free_token_rcu);
}

/* Drops token's mapping if it still points at number. Inside a read section. */
static void token_drop(struct cache_table *t, const char *token, const char *number)
{
    if (!token)
        return;
    struct cds_lfht_iter it;
    cds_lfht_lookup(t->tokens, hash_number(token), match_token, token, &it);
    struct cds_lfht_node *found = cds_lfht_iter_get_node(&it);
    if (found && strcmp(TOKEN(found)->number, number) == 0 && cds_lfht_del(t->tokens, found) == 0)
        call_rcu(&TOKEN(found)->rcu, free_token_rcu);
}

static bool same_token(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* After `e` replaced `old` (either may lack tokens): the index follows the new entry. */
static void tokens_follow(struct cache_table *t, const struct cache_entry *old,
                          const struct cache_entry *e)
{
    if (old) {
        if (!same_token(old->name2, e->name2) && !same_token(old->name2, e->secret))
            token_drop(t, old->name2, old->number);
        if (!same_token(old->secret, e->name2) && !same_token(old->secret, e->secret))
            token_drop(t, old->secret, old->number);
    }
    token_put(t, e->name2, e->number);
    token_put(t, e->secret, e->number);
}

struct cache_table *cache_table_new(size_t expected)
{
    unsigned long size = 1024;
    while (size < expected && size < (1ul << 22))
        size <<= 1;
    struct cache_table *t = xcalloc(1, sizeof *t);
    /* Fixed size, chosen by the caller from the expected count: with auto-resize, destroying a
     * large table (after a refresh) shrank it step by step and took seconds of CPU. Tables grow
     * only by point loads between refreshes, a small fraction. */
    t->ht = cds_lfht_new(size, size, size, 0, NULL);
    /* two tokens per enterprise (name2 and secret): chains as short as the entries' */
    t->tokens = cds_lfht_new(2 * size, 2 * size, 2 * size, 0, NULL);
    if (!t->ht || !t->tokens) {
        fprintf(stderr, "FATAL cannot allocate the cache hash table\n");
        abort();
    }
    return t;
}

static void count(struct cache_table *t, const struct cache_entry *e, int delta)
{
    if (!e->negative)
        atomic_fetch_add(&t->positive, (size_t)delta);
    atomic_fetch_add(&t->all, (size_t)delta);
}

static void release_rcu(struct rcu_head *head)
{
    struct cache_node *n = caa_container_of(head, struct cache_node, rcu);
    entry_unref(n->entry);
    free(n);
}

/* Inserts e into t (t may be visible to readers), replacing the entry of the same number unless
 * keep_newer and that one is newer. Takes over e's reference. Writers are serialised by the
 * caller (one I/O thread), so the check and the replacement need no lock between them. */
static bool table_put(struct cache_table *t, struct cache_entry *e, bool keep_newer)
{
    uint64_t h = hash_number(e->number);
    rcu_read_lock();
    if (keep_newer) {
        struct cds_lfht_iter it;
        cds_lfht_lookup(t->ht, h, match_number, e->number, &it);
        struct cds_lfht_node *found = cds_lfht_iter_get_node(&it);
        if (found && NODE(found)->entry->seq > e->seq) {
            rcu_read_unlock();
            entry_unref(e);
            return false;
        }
    }
    if (e->seq > t->newest_seq)
        t->newest_seq = e->seq;
    struct cache_node *n = xcalloc(1, sizeof *n);
    n->entry = e;
    struct cds_lfht_node *replaced =
        cds_lfht_add_replace(t->ht, h, match_number, e->number, &n->node);
    struct cache_node *old = replaced ? NODE(replaced) : NULL;
    tokens_follow(t, old ? old->entry : NULL, e);
    count(t, e, +1);
    if (old) {
        count(t, old->entry, -1);
        call_rcu(&old->rcu, release_rcu);
    }
    rcu_read_unlock();
    return true;
}

void cache_table_add(struct cache_table *t, struct cache_entry *e)
{
    table_put(t, e, false);
}

/* Unlinks every node and drops the table's references; no reader may still see t. */
static void table_destroy(struct cache_table *t)
{
    struct cds_lfht_iter it;
    struct cache_node *n;
    rcu_read_lock();
    cds_lfht_for_each_entry(t->ht, &it, n, node)
    {
        if (cds_lfht_del(t->ht, &n->node) == 0) {
            entry_unref(n->entry);
            free(n);
        }
    }
    struct token_node *tn;
    cds_lfht_for_each_entry(t->tokens, &it, tn, node)
    {
        if (cds_lfht_del(t->tokens, &tn->node) == 0)
            free(tn);
    }
    rcu_read_unlock();
    cds_lfht_destroy(t->ht, NULL);
    cds_lfht_destroy(t->tokens, NULL);
    free(t);
}

void cache_table_add_token(struct cache_table *t, const char *token, const char *number)
{
    rcu_read_lock();
    token_put(t, token, number);
    rcu_read_unlock();
}

bool cache_resolve_token(struct cache_store *s, const char *token, char *number)
{
    struct cds_lfht_iter it;
    rcu_read_lock();
    struct cache_table *t = rcu_dereference(s->current);
    cds_lfht_lookup(t->tokens, hash_number(token), match_token, token, &it);
    struct cds_lfht_node *found = cds_lfht_iter_get_node(&it);
    if (found)
        snprintf(number, PARAM_MAX_LEN + 1, "%s", TOKEN(found)->number);
    rcu_read_unlock();
    return found != NULL;
}

void cache_table_free(struct cache_table *t)
{
    if (t)
        table_destroy(t);
}

static void carry_clear(struct cache_store *s)
{
    for (size_t i = 0; i < s->carry.n; i++)
        entry_unref(s->carry.v[i]);
    free(s->carry.v);
    s->carry.v = NULL;
    s->carry.n = s->carry.cap = 0;
    s->carry.on = false;
}

void cache_carry_from(struct cache_store *s, uint64_t since_seq)
{
    carry_clear(s);
    s->carry.on = true;
    s->carry.since_seq = since_seq;
}

void cache_carry_stop(struct cache_store *s)
{
    carry_clear(s);
}

/* Records e (put into the current table) for the swap, if a refresh is being built. */
static void carry_note(struct cache_store *s, struct cache_entry *e)
{
    if (!s->carry.on || e->seq <= s->carry.since_seq)
        return;
    if (s->carry.n == CARRY_MAX) {
        carry_clear(s); /* the swap walks instead */
        return;
    }
    if (s->carry.n == s->carry.cap) {
        s->carry.cap = s->carry.cap ? 2 * s->carry.cap : 64;
        s->carry.v = xrealloc(s->carry.v, s->carry.cap * sizeof *s->carry.v);
    }
    s->carry.v[s->carry.n++] = entry_ref(e);
}

static void *reaper_main(void *arg)
{
    struct cache_store *s = arg;
    /* named, so that top -H and perf tell it from the I/O thread (the process's main thread) */
    pthread_setname_np(pthread_self(), "ic-reaper");
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->graveyard && !s->stopping)
            pthread_cond_wait(&s->wake, &s->lock);
        struct cache_table *dead = s->graveyard;
        s->graveyard = NULL;
        s->buried_then = s->buried;
        if (!dead && s->stopping)
            break;
        pthread_mutex_unlock(&s->lock);
        synchronize_rcu(); /* no reader can still be inside these tables */
        while (dead) {
            struct cache_table *next = dead->next_dead;
            table_destroy(dead);
            dead = next;
        }
        malloc_trim(0); /* hand the freed entries back to the system, not to heap slack */
        pthread_mutex_lock(&s->lock);
        s->reaped = s->buried_then;
        pthread_cond_broadcast(&s->done);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

struct cache_store *cache_store_new(void)
{
    struct cache_store *s = xcalloc(1, sizeof *s);
    s->current = cache_table_new(1024);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->done, NULL);
    if (pthread_create(&s->reaper, NULL, reaper_main, s) != 0) {
        fprintf(stderr, "FATAL cannot start the cache reaper thread\n");
        abort();
    }
    return s;
}

void cache_store_settle(struct cache_store *s)
{
    pthread_mutex_lock(&s->lock);
    while (s->reaped != s->buried)
        pthread_cond_wait(&s->done, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

void cache_store_free(struct cache_store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->reaper, NULL); /* frees what was still waiting */
    carry_clear(s);
    rcu_barrier(); /* let pending call_rcu releases finish first */
    table_destroy(s->current);
    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->done);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

struct cache_entry *cache_get_ref(struct cache_store *s, const char *number)
{
    struct cache_entry *found = NULL;
    struct cds_lfht_iter it;
    rcu_read_lock();
    struct cache_table *t = rcu_dereference(s->current);
    cds_lfht_lookup(t->ht, hash_number(number), match_number, number, &it);
    struct cds_lfht_node *node = cds_lfht_iter_get_node(&it);
    if (node)
        found = entry_ref(NODE(node)->entry);
    rcu_read_unlock();
    return found;
}

size_t cache_count(struct cache_store *s)
{
    rcu_read_lock();
    size_t n = atomic_load(&rcu_dereference(s->current)->positive);
    rcu_read_unlock();
    return n;
}

void cache_foreach(struct cache_store *s, void (*fn)(const struct cache_entry *e, void *ctx),
                   void *ctx)
{
    struct cds_lfht_iter it;
    struct cache_node *n;
    rcu_read_lock();
    struct cache_table *t = rcu_dereference(s->current);
    cds_lfht_for_each_entry(t->ht, &it, n, node)
    {
        if (!n->entry->negative)
            fn(n->entry, ctx);
    }
    rcu_read_unlock();
}

void cache_put(struct cache_store *s, struct cache_entry *e)
{
    /* once put, e stays valid here: only this thread removes entries, and it frees them after a
     * grace period */
    if (table_put(s->current, e, true))
        carry_note(s, e);
}

static void table_remove_node(struct cache_table *t, struct cache_node *n)
{
    if (cds_lfht_del(t->ht, &n->node) == 0) {
        count(t, n->entry, -1);
        call_rcu(&n->rcu, release_rcu);
    }
}

void cache_remove(struct cache_store *s, const char *number)
{
    struct cds_lfht_iter it;
    rcu_read_lock();
    cds_lfht_lookup(s->current->ht, hash_number(number), match_number, number, &it);
    struct cds_lfht_node *node = cds_lfht_iter_get_node(&it);
    if (node)
        table_remove_node(s->current, NODE(node));
    rcu_read_unlock();
}

size_t cache_sweep(struct cache_store *s, double mono_now)
{
    size_t removed = 0;
    struct cds_lfht_iter it;
    struct cache_node *n;
    rcu_read_lock();
    cds_lfht_for_each_entry(s->current->ht, &it, n, node)
    {
        if (!entry_fresh(n->entry, mono_now)) {
            table_remove_node(s->current, n);
            removed++;
        }
    }
    rcu_read_unlock();
    return removed;
}

size_t cache_swap(struct cache_store *s, struct cache_table *t, uint64_t since_seq)
{
    struct cache_table *old = s->current;
    struct cds_lfht_iter it;
    struct cache_node *n;
    bool recorded = s->carry.on && s->carry.since_seq == since_seq;
    /* Usually nothing was loaded meanwhile. Otherwise the entries put since the refresh began are
     * on record; only without a record are all entries walked (cache misses on each: 40 ms at
     * 100,000, during which the I/O thread answers nothing). */
    if (old->newest_seq > since_seq) {
        rcu_read_lock();
        if (recorded) {
            for (size_t i = 0; i < s->carry.n; i++) {
                struct cache_entry *e = s->carry.v[i];
                /* only if still the old table's entry: not since replaced, removed or swept */
                cds_lfht_lookup(old->ht, hash_number(e->number), match_number, e->number, &it);
                struct cds_lfht_node *found = cds_lfht_iter_get_node(&it);
                if (found && NODE(found)->entry == e)
                    table_put(t, entry_ref(e), true);
            }
        } else {
            cds_lfht_for_each_entry(old->ht, &it, n, node)
            {
                if (n->entry->seq > since_seq)
                    table_put(t, entry_ref(n->entry), true);
            }
        }
        rcu_read_unlock();
    }
    carry_clear(s);
    rcu_assign_pointer(s->current, t);
    pthread_mutex_lock(&s->lock);
    old->next_dead = s->graveyard;
    s->graveyard = old;
    s->buried++;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    return atomic_load(&t->positive);
}
