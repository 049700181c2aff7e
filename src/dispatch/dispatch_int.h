/*
 * Private to src/dispatch/: the dispatcher's state, shared by intake.c (group commit and spool)
 * and deliver.c (claims, deliveries, outcomes). Loop thread only, except `targets[].stats`.
 */
#pragma once
#include "db/pgconn.h"
#include "dispatch/breaker.h"
#include "dispatch/dispatcher.h"
#include "dispatch/spool.h"

struct delivery; /* deliver.c */

struct target_state {
    struct target_stats stats;
    struct breaker breaker;
    const char *base_url;
    bool claiming, claim_again;
    struct pg_query claim_q;
    char claim_params[3][64];
    /* claimed rows waiting for a delivery slot, oldest first */
    struct delivery *ready, *ready_tail;
    long nready;
};

struct mark; /* deliver.c */

/* Group commit runs on several connections at once (--intake-connections); an event's lane is
 * chosen by its uniqueId, so a call's dial and hangup always commit in order, on one lane. */
#define INTAKE_MAX_LANES 8

struct intake_lane {
    struct dispatcher *d;
    struct pg_conn *conn;
    struct dispatch_job *queue, *queue_tail;
    struct dispatch_job *inserting; /* the batch in flight */
    struct pg_query q;
    char *param;
};

struct dispatcher {
    struct io_loop *loop;
    const struct settings *set;
    struct stats *stats;
    struct upstream *up;
    struct dedup *dedup;
    struct spool *spool;
    struct intake_lane lanes[INTAKE_MAX_LANES];
    int nlanes;
    struct pg_conn *delivery_conn;
    char instance[200];
    /* intake: replays run on lane 0 */
    bool replaying;
    size_t replay_len;
    double replay_backoff;        /* after a failed replay: wait before the next */
    struct io_timer replay_timer; /* armed while waiting */
    struct pg_query replay_q;
    char *replay_param;
    /* delivery */
    struct target_state targets[TARGET_COUNT];
    bool sip_unit, started, dedup_loaded, closing, quiescing;
    atomic_bool ready; /* dedup_loaded, or the database could not be asked (dispatcher_ready) */
    struct mark *marks, *marks_in_flight;
    struct pg_query mark_q, log_q, housekeeping_q, setup_q[3];
    char *mark_param, *log_param;
    bool marking, housekeeping;
    struct io_timer poll_timer, housekeeping_timer;
    double last_retention, last_summary;
    double count_started, next_count; /* the pending count: when sent, when due again */
    unsigned long summarized[4]; /* accepted, delivered, retried, abandoned at the last summary */
};

/* intake.c */
void intake_init(struct dispatcher *d);
void intake_start(struct dispatcher *d);
void intake_enqueue(struct dispatcher *d, struct dispatch_job *j);
void intake_flush(struct dispatcher *d);
bool intake_idle(struct dispatcher *d);
/* Fails what is in flight and spools everything queued; the lanes' connections are freed. */
void intake_close(struct dispatcher *d);

/* deliver.c */
void deliver_kick(struct dispatcher *d);
void deliver_init(struct dispatcher *d);
void deliver_free(struct dispatcher *d);
bool deliver_idle(struct dispatcher *d);
extern const struct pg_conn_ops delivery_conn_ops;
