/*
 * Customer look-ups (SPEC §7): name, profile and responsible manager's extension of a phone,
 * asked of the enterprise's primary CRM service. Results, "not found" included, are kept for
 * --lookup-ttl per (kind, enterprise, phone) in a small mutex-protected table any thread may
 * read; failures are answered with nulls and not kept. Downstream calls run on the I/O thread
 * through the shared libcurl loop: identical look-ups in flight share one call, and each has a
 * deadline of --lookup-timeout with at most two attempts.
 */
#pragma once
#include <stdbool.h>

#include "io/loop.h"
#include "settings.h"
#include "stats.h"
#include "upstream/upstream.h"
#include "util/params.h"

enum lookup_kind { LOOKUP_NAME, LOOKUP_PROFILE, LOOKUP_EXTENSION };

struct lookup;

struct lookup_request {
    struct io_task task;
    enum lookup_kind kind;
    char number[PARAM_MAX_LEN + 1];
    char phone[64];                  /* normalised */
    char primary[PARAM_MAX_LEN + 1]; /* retailcrm, ms or uon (anything else: nulls) */
    char *mapping; /* LOOKUP_EXTENSION: JSON object manager_id -> extension; owned */
    bool nocache;  /* the caller skipped the cache; the result still refreshes it */
    /* Runs on the I/O thread with `body` (malloc'd JSON) filled in. */
    void (*done)(struct lookup_request *r);
    char *body;
    struct lookup_request *next;
    struct lookup *owner;
};

struct lookup *lookup_new(struct io_loop *loop, const struct settings *set, struct stats *stats,
                          struct upstream *up);
void lookup_free(struct lookup *l);

/* Any thread: the cached answer as a new malloc'd JSON body, or NULL. */
char *lookup_cached(struct lookup *l, enum lookup_kind kind, const char *number, const char *phone);
/* Any thread. */
void lookup_submit(struct lookup *l, struct lookup_request *r);
/* Any thread: forget every cached look-up of the enterprise. */
void lookup_invalidate(struct lookup *l, const char *number);

/* The all-null answer of a kind (a static string). */
const char *lookup_null_body(enum lookup_kind kind);
/* Pure: turns a downstream answer into our answer for kind and primary. `mapping` (may be NULL)
 * maps manager ids to extensions. Returns a malloc'd JSON body. */
char *lookup_shape(enum lookup_kind kind, const char *primary, const char *downstream, size_t len,
                   const char *mapping);
