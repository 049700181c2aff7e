/*
 * One cached enterprise: its pre-rendered response bytes and its freshness. An entry is immutable
 * once built; a change in the database produces a new entry that replaces the old one, and the old
 * one is freed when the last reader and the last response holding it are done (reference count;
 * the table holds one reference). Built from the row's JSON text, byte for byte: every member of an
 * integration is served exactly as PostgreSQL stored it.
 *
 * Layout of `text` (in the same allocation as the entry and its `types`):
 *   config view:  {"enterprise_number":"N","integrations":{...},"source":"cache","cached_at":"ISO"}
 *   status view:  {"integrations":{"ms":true,...},"created_at":X,"expires_at":Y,"age_seconds":
 * The status view ends where a per-request age and "}" follow; /config/{e}/{type} responses are
 * composed from a per-request prefix, the slice `types[i]` of the config view and a constant tail.
 */
#pragma once
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/params.h"

struct entry_type {
    char name[PARAM_MAX_LEN + 1];
    size_t off, len; /* the integration's object inside `text` */
};

struct cache_entry {
    atomic_uint refs;    /* each table node holding it, each reader or response holding it */
    uint64_t seq;        /* when the load that produced it was sent: newer wins (store.c) */
    double loaded_mono;  /* monotonic clock at build time: age and expiry */
    double expires_mono; /* served as a hit until then */
    double created_at;   /* epoch seconds, what clients see */
    bool negative;       /* the enterprise is not served: a short-lived "no" */
    bool known;          /* a row exists for it (a negative entry may still be known) */
    char number[PARAM_MAX_LEN + 1];
    char *name2, *secret;            /* dispatch tokens; NULL when empty (entry_set_tokens) */
    unsigned enabled_targets;        /* bit (1 << target_id) per enabled dispatch target */
    char primary[PARAM_MAX_LEN + 1]; /* smart.primary: who answers customer look-ups */
    char *text;
    size_t config_len;       /* config view: text[0 .. config_len) */
    size_t integrations_off; /* the "integrations" object inside the config view */
    size_t integrations_len;
    size_t status_off, status_len; /* status view prefix */
    size_t ntypes;
    struct entry_type *types;
};

struct entry_clock {
    double real_now, mono_now; /* one reading for the whole build (a refresh shares it) */
    double ttl;
    char iso[32]; /* real_now as clients see it in "cached_at", formatted once */
};

/* A clock for entry_build: the readings, and real_now formatted (local time, as TZ says). */
struct entry_clock entry_clock_at(double real_now, double mono_now, double ttl);

/* Builds a served enterprise's entry from its integrations_config text (validated here with a
 * strict parser; at most `max_len` bytes). `problems` (may be NULL) is incremented for every
 * top-level value that is not an object. Returns a new entry holding one reference, or NULL with a
 * reason in `why` (never containing config content, so it is safe to log). */
struct cache_entry *entry_build(const char *number, const char *config, size_t len, size_t max_len,
                                const struct entry_clock *clock, uint64_t seq, unsigned *problems,
                                const char **why);

/* A negative entry: `number` is not served, remember that until mono_now + ttl. */
struct cache_entry *entry_new_negative(const char *number, double mono_now, double ttl,
                                       uint64_t seq);

/* Attaches the enterprise's tokens (name2, secret; NULL or "" for none; longer than
 * ENTRY_MAX_TOKEN bytes are ignored). Only before the entry is published. */
#define ENTRY_MAX_TOKEN 128
void entry_set_tokens(struct cache_entry *e, const char *name2, const char *secret);

/* Reference counting; safe from any thread. The last unref frees. */
struct cache_entry *entry_ref(struct cache_entry *e);
void entry_unref(struct cache_entry *e);

bool entry_fresh(const struct cache_entry *e, double mono_now);
/* The integration's config slice, or NULL when the enterprise has no such integration. */
const struct entry_type *entry_find_type(const struct cache_entry *e, const char *type);

/* SPEC §2.1: JSON true, the number 1, or the string "true" in any case. `value` is the member's
 * JSON text (validated), NULL for a missing member. */
bool integration_enabled(const char *value, size_t len);
