/*
 * The shared cache: enterprise number -> entry, in an RCU lock-free hash table. Readers on any
 * thread never block; exactly one thread (the I/O thread) writes. A full refresh builds a whole new
 * table and switches to it with one pointer store, so a reader sees the old cache or the new one,
 * never a mix. Entries carry the sequence number of the load that produced them and a write never
 * replaces a newer entry with an older one, so a slow refresh cannot undo a notification that
 * arrived while it ran.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/entry.h"

struct cache_store;
struct cache_table;

/* Starts the store's reaper thread (see cache_swap). */
struct cache_store *cache_store_new(void);
/* Waits until every table replaced so far has been freed (tests, and anyone who needs the old
 * entries' references dropped before going on). */
void cache_store_settle(struct cache_store *s);
/* At shutdown, once no reader or writer is left; joins the reaper. */
void cache_store_free(struct cache_store *s);

/* Any thread. Returns the entry for `number` with a reference the caller must drop
 * (entry_unref), or NULL. The entry may be expired or negative: the caller decides. */
struct cache_entry *cache_get_ref(struct cache_store *s, const char *number);

/* Any thread: the enterprise number whose name2 or secret is `token` (into number, which has
 * PARAM_MAX_LEN + 1 bytes); false when no enterprise has it. Tokens are kept for every enterprise
 * the last refresh saw, served or not, and follow entries as they are replaced. */
bool cache_resolve_token(struct cache_store *s, const char *token, char *number);

/* Live count of positive entries in the current table (any thread). */
size_t cache_count(struct cache_store *s);

/* Calls fn for each positive entry of the current table, inside one read-side critical section:
 * fn must not block. */
void cache_foreach(struct cache_store *s, void (*fn)(const struct cache_entry *e, void *ctx),
                   void *ctx);

/* --- writer side: the I/O thread only --- */

/* Inserts or replaces, taking over the caller's reference. An existing entry with a higher seq
 * wins and the new one is dropped instead. */
void cache_put(struct cache_store *s, struct cache_entry *e);
/* Removes `number`'s entry, if any. */
void cache_remove(struct cache_store *s, const char *number);
/* Removes entries expired at mono_now; returns how many. */
size_t cache_sweep(struct cache_store *s, double mono_now);

/* A table being filled by a full refresh, not yet visible to readers. */
struct cache_table *cache_table_new(size_t expected);
void cache_table_add(struct cache_table *t, struct cache_entry *e); /* takes the reference */
/* A token of an enterprise that has no entry (not served). */
void cache_table_add_token(struct cache_table *t, const char *token, const char *number);
void cache_table_free(struct cache_table *t); /* discard an unused table */
/* A refresh sent at `since_seq` is building a new table: from now on the store records what is
 * put, so that cache_swap(.., since_seq) carries those entries over without walking every entry
 * of the old table. cache_carry_stop drops the record (the refresh failed). */
void cache_carry_from(struct cache_store *s, uint64_t since_seq);
void cache_carry_stop(struct cache_store *s);
/* Publishes `t` as the current table. Entries of the old table loaded after `since_seq` (that is,
 * by a load sent after the refresh query) are carried over, since they are newer than the
 * refresh's rows. The old table is released by the store's reaper thread after a grace period,
 * so this returns at once. Returns the new table's positive entry count. */
size_t cache_swap(struct cache_store *s, struct cache_table *t, uint64_t since_seq);
