/*
 * The dispatcher's life cycle (see dispatcher.h). Its database connections: the intake lanes
 * carry group commits and spool replays, `delivery` carries claims and outcomes, so a slow claim
 * never delays an acknowledgement.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dispatch/dispatch_int.h"
#include "util/log.h"
#include "util/xalloc.h"

static void run_job(struct io_loop *loop, struct io_task *task)
{
    struct dispatch_job *j = (struct dispatch_job *)task;
    intake_enqueue(j->owner, j);
}

void dispatcher_submit(struct dispatcher *d, struct dispatch_job *j)
{
    j->owner = d;
    j->task.fn = run_job;
    io_post(d->loop, &j->task);
}

struct dispatcher *dispatcher_new(struct io_loop *loop, const struct settings *set,
                                  struct stats *stats, struct upstream *up, struct dedup *dedup)
{
    struct dispatcher *d = xcalloc(1, sizeof *d);
    d->loop = loop;
    d->set = set;
    d->stats = stats;
    d->up = up;
    d->dedup = dedup;
    d->spool = spool_open(set->spool_dir);
    if (!d->spool) {
        free(d);
        return NULL;
    }
    if (set->instance) {
        snprintf(d->instance, sizeof d->instance, "%s", set->instance);
    } else {
        char host[128] = "localhost";
        gethostname(host, sizeof host - 1);
        snprintf(d->instance, sizeof d->instance, "%s:%s", host, set->listen);
    }
    struct pg_conn_config cfg = pg_conn_config_for(set, "delivery", false);
    d->delivery_conn = pg_conn_new(loop, &cfg, &delivery_conn_ops, d);
    intake_init(d);
    deliver_init(d);
    return d;
}

void dispatcher_start(struct dispatcher *d)
{
    log_info("dispatch: instance '%s', spool in %s", d->instance, d->set->spool_dir);
    intake_start(d);
    pg_conn_start(d->delivery_conn);
}

bool dispatcher_ready(struct dispatcher *d)
{
    return d && atomic_load(&d->ready);
}

void dispatcher_quiesce(struct dispatcher *d)
{
    if (d)
        d->quiescing = true;
}

bool dispatcher_idle(struct dispatcher *d)
{
    return !d || (intake_idle(d) && deliver_idle(d));
}

void dispatcher_close(struct dispatcher *d)
{
    if (d)
        d->closing = true;
}

void dispatcher_free(struct dispatcher *d)
{
    if (!d)
        return;
    d->closing = true;
    intake_close(d); /* an INSERT in flight fails and is spooled, and so is what is queued */
    pg_conn_free(d->delivery_conn);
    io_timer_disarm(d->loop, &d->replay_timer);
    deliver_free(d);
    spool_close(d->spool);
    free(d->replay_param);
    free(d);
}

void dispatcher_stats_json(struct dispatcher *d, struct buf *b)
{
    buf_append_str(b, ",\"dispatch_targets\":{");
    for (int t = 0; t < TARGET_COUNT; t++) {
        struct target_stats *st = &d->targets[t].stats;
        buf_printf(b, "%s\"%s\":{\"pending\":%ld,\"in_flight\":%ld,\"breaker\":\"%s\"}",
                   t ? "," : "", target_names[t], atomic_load(&st->pending),
                   atomic_load(&st->in_flight),
                   breaker_state_name((enum breaker_state)atomic_load(&st->breaker)));
    }
    buf_append_str(b, "}");
}
