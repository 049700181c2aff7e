/*
 * Call-event dispatch on the I/O thread (SPEC §6): durable intake with group commit (outbox in
 * PostgreSQL, local spool while it is away), and delivery of outbox rows to the integration
 * services with retries, ordering per call and target, and a circuit breaker per target.
 * HTTP threads hand accepted events over with dispatcher_submit; everything else is internal.
 */
#pragma once
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "dispatch/dedup.h"
#include "io/loop.h"
#include "settings.h"
#include "stats.h"
#include "targets.h"
#include "upstream/upstream.h"
#include "util/buf.h"

/* One accepted event on its way into the outbox. */
struct dispatch_job {
    struct io_task task;
    char *rows;        /* the event's outbox rows as one JSON object, owned by the job: event_id,
                          enterprise_number, unique_id, event_type, payload, accepted_at and "targets",
                          one row per target (queries.h, SQL_OUTBOX_INSERT) */
    unsigned lane_key; /* events with equal keys commit in order (a hash of the uniqueId) */
    /* Runs on the I/O thread once the event is durable (status 200) or could not be recorded
     * anywhere (503). */
    void (*done)(struct dispatch_job *j);
    int status;
    bool spooled;
    struct dispatch_job *next;
    struct dispatcher *owner;
};

/* Per-target figures for /stats, readable from any thread. */
struct target_stats {
    atomic_long pending, in_flight;
    atomic_int breaker; /* enum breaker_state */
};

struct dispatcher;

/* NULL when the spool directory cannot be used (logged). */
struct dispatcher *dispatcher_new(struct io_loop *loop, const struct settings *set,
                                  struct stats *stats, struct upstream *up, struct dedup *dedup);
void dispatcher_start(struct dispatcher *d);
/* On the loop thread, when shutdown begins: claim no more rows; deliveries under way finish and
 * their outcomes are written back. */
void dispatcher_quiesce(struct dispatcher *d);
/* True when nothing is in flight: no delivery, no outcome to write, no intake batch. */
bool dispatcher_idle(struct dispatcher *d);

/* After the loop stopped, before the upstream loop is freed: deliveries still running end
 * without recording an outcome (their leases lapse, or the next start releases them). */
void dispatcher_close(struct dispatcher *d);
/* After dispatcher_close and upstream_free: answers queued jobs (spooling them) and frees. */
void dispatcher_free(struct dispatcher *d);

/* Any thread. */
void dispatcher_submit(struct dispatcher *d, struct dispatch_job *j);
/* Any thread: true once duplicate detection knows the outbox's recent events (or the database
 * could not be asked: then from that moment on, best effort). Intake answers 503 before. */
bool dispatcher_ready(struct dispatcher *d);

/* Appends "dispatch_targets":{...} members to b (any thread). */
void dispatcher_stats_json(struct dispatcher *d, struct buf *b);
