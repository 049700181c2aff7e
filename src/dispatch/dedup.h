/*
 * Duplicate suppression for call events (SPEC §6.3): (uniqueId, event_type) seen within 60 s
 * (dial) or 300 s (hangup) is a duplicate. Memory is bounded: a ring of `capacity` records, the
 * oldest forgotten first. Thread-safe (one mutex; each call is a hash probe). Times are epoch
 * seconds so that records loaded from the outbox after a restart keep their age.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define DEDUP_WINDOW_DIAL 60.0
#define DEDUP_WINDOW_HANGUP 300.0

struct dedup;

struct dedup *dedup_new(size_t capacity);
void dedup_free(struct dedup *d);

/* Atomically: true when (id, type) was recorded within its window (a duplicate); otherwise
 * records it at `now` and returns false. */
bool dedup_check_and_add(struct dedup *d, const char *unique_id, const char *event_type,
                         double now);
/* Takes back a record made by dedup_check_and_add (the event could not be recorded after all). */
void dedup_forget(struct dedup *d, const char *unique_id, const char *event_type);
size_t dedup_size(struct dedup *d);
