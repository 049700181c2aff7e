/*
 * Service counters, shared by every thread: relaxed atomics, bumped where the event happens and
 * read by /stats and /health. One X-macro table lists the plain counters, so adding one is one
 * line and /stats shows it under the same name.
 */
#pragma once
#include <stdatomic.h>

/* The counters SPEC §4 names; /stats prints them in its own order with the derived members. */
#define STATS_SPEC_COUNTERS(X)                                                                     \
    X(hits)                                                                                        \
    X(misses)                                                                                      \
    X(config_hits)                                                                                 \
    X(config_misses)                                                                               \
    X(refreshes)

/* Further counters, printed by /stats under these names. */
#define STATS_EXTRA_COUNTERS(X)                                                                    \
    X(refresh_failures)                                                                            \
    X(notifications_received)                                                                      \
    X(notifications_ignored)                                                                       \
    X(database_loads)                                                                              \
    X(database_errors)                                                                             \
    X(validation_problems)                                                                         \
    X(stale_served)                                                                                \
    X(expired_removed)                                                                             \
    X(dispatch_accepted)                                                                           \
    X(dispatch_duplicates)                                                                         \
    X(dispatch_spooled)                                                                            \
    X(dispatch_delivered)                                                                          \
    X(dispatch_retried)                                                                            \
    X(dispatch_abandoned)                                                                          \
    X(lookup_hits)                                                                                 \
    X(lookup_misses)                                                                               \
    X(lookup_failures)

struct stats {
#define STATS_FIELD(name) atomic_ulong name;
    STATS_SPEC_COUNTERS(STATS_FIELD)
    STATS_EXTRA_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
    /* gauges written by the I/O thread */
    atomic_ulong cache_size;     /* positive entries after the last full refresh */
    _Atomic double last_refresh; /* epoch seconds of the last successful refresh; 0: none */
    _Atomic double last_refresh_mono;
    _Atomic double last_refresh_ms;
    atomic_bool db_connected; /* query and listener connections both ready */
    atomic_bool ready;        /* the first full load succeeded */
    atomic_ulong listener_reconnects;
};

#define STAT_INC(st, name) atomic_fetch_add_explicit(&(st)->name, 1, memory_order_relaxed)
#define STAT_ADD(st, name, n) atomic_fetch_add_explicit(&(st)->name, (n), memory_order_relaxed)
#define STAT_GET(st, name) atomic_load_explicit(&(st)->name, memory_order_relaxed)
