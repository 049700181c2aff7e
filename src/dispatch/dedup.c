/*
 * Bounded dedup table (see dedup.h): records live in a ring (insertion order = age order) and
 * are chained into hash buckets by index. Adding to a full ring evicts the oldest record.
 */
#include "dispatch/dedup.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch/event.h"
#include "util/xalloc.h"

#define NIL UINT32_MAX

struct record {
    char key[EVENT_MAX_ID + 8]; /* "d:" or "h:" + uniqueId; "" when free */
    double at;
    uint32_t next; /* bucket chain */
};

struct dedup {
    pthread_mutex_t lock;
    struct record *ring;
    uint32_t capacity, head, count; /* head: oldest record */
    uint32_t *buckets;
    uint32_t nbuckets; /* a power of two */
};

static uint32_t hash_key(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void make_key(char *key, const char *id, const char *type)
{
    snprintf(key, EVENT_MAX_ID + 8, "%c:%s", type[0], id);
}

struct dedup *dedup_new(size_t capacity)
{
    struct dedup *d = xcalloc(1, sizeof *d);
    pthread_mutex_init(&d->lock, NULL);
    d->capacity = (uint32_t)(capacity ? capacity : 1);
    d->ring = xcalloc(d->capacity, sizeof *d->ring);
    d->nbuckets = 1;
    while (d->nbuckets < d->capacity)
        d->nbuckets <<= 1;
    d->buckets = xmalloc(d->nbuckets * sizeof *d->buckets);
    memset(d->buckets, 0xff, d->nbuckets * sizeof *d->buckets);
    return d;
}

void dedup_free(struct dedup *d)
{
    if (!d)
        return;
    pthread_mutex_destroy(&d->lock);
    free(d->ring);
    free(d->buckets);
    free(d);
}

static uint32_t *slot_of(struct dedup *d, const char *key)
{
    return &d->buckets[hash_key(key) & (d->nbuckets - 1)];
}

/* Unlinks record i from its bucket chain and marks it free. */
static void unlink_record(struct dedup *d, uint32_t i)
{
    for (uint32_t *p = slot_of(d, d->ring[i].key); *p != NIL; p = &d->ring[*p].next) {
        if (*p == i) {
            *p = d->ring[i].next;
            break;
        }
    }
    d->ring[i].key[0] = '\0';
}

static uint32_t find(struct dedup *d, const char *key)
{
    for (uint32_t i = *slot_of(d, key); i != NIL; i = d->ring[i].next)
        if (strcmp(d->ring[i].key, key) == 0)
            return i;
    return NIL;
}

bool dedup_check_and_add(struct dedup *d, const char *unique_id, const char *event_type, double now)
{
    char key[EVENT_MAX_ID + 8];
    make_key(key, unique_id, event_type);
    double window = event_type[0] == 'd' ? DEDUP_WINDOW_DIAL : DEDUP_WINDOW_HANGUP;
    pthread_mutex_lock(&d->lock);
    uint32_t i = find(d, key);
    if (i != NIL && now - d->ring[i].at < window) {
        pthread_mutex_unlock(&d->lock);
        return true;
    }
    if (i != NIL) /* seen long ago: recorded anew below, as the youngest */
        unlink_record(d, i);
    if (d->count == d->capacity) { /* evict the oldest */
        if (d->ring[d->head].key[0])
            unlink_record(d, d->head);
        d->head = (d->head + 1) % d->capacity;
        d->count--;
    }
    uint32_t at = (d->head + d->count) % d->capacity;
    struct record *r = &d->ring[at];
    memcpy(r->key, key, sizeof key);
    r->at = now;
    uint32_t *slot = slot_of(d, key);
    r->next = *slot;
    *slot = at;
    d->count++;
    pthread_mutex_unlock(&d->lock);
    return false;
}

void dedup_forget(struct dedup *d, const char *unique_id, const char *event_type)
{
    char key[EVENT_MAX_ID + 8];
    make_key(key, unique_id, event_type);
    pthread_mutex_lock(&d->lock);
    uint32_t i = find(d, key);
    if (i != NIL)
        unlink_record(d, i); /* the ring slot stays until it ages out */
    pthread_mutex_unlock(&d->lock);
}

size_t dedup_size(struct dedup *d)
{
    pthread_mutex_lock(&d->lock);
    size_t n = d->count;
    pthread_mutex_unlock(&d->lock);
    return n;
}
