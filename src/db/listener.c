/*
 * LISTEN/NOTIFY (SPEC §5.3). The listener connection LISTENs on the config channel and on a
 * heartbeat channel; each time it is (re)established it runs a full refresh, since notifications
 * sent while it was away are lost. Every heartbeat interval the service notifies itself through
 * the `query` connection; a heartbeat that does not come back within the timeout means the
 * listener is connected but deaf, and it is reset like a dropped connection.
 */
#include <jansson.h>
#include <string.h>

#include "db/loader_int.h"
#include "db/queries.h"
#include "util/container.h"
#include "util/log.h"

static void listen_done(struct pg_query *q, const PGresult *res, const char *error)
{
    struct loader *l = q->ctx;
    if (error || q != &l->listen_q[1])
        return; /* a failure resets the connection, which fails the rest; READY runs us again */
    bool again = pg_conn_reconnects(l->listener) > 0;
    l->listening = true;
    loader_update_connected(l);
    if (again) {
        STAT_INC(l->stats, listener_reconnects);
        log_info("listener reconnected; running a full refresh for changes missed meanwhile");
    } else {
        log_info("listening for %s notifications", CHANNEL_CONFIG);
    }
    refresh_start(l, NULL);
}

static void listener_state(struct pg_conn *c, enum pg_state state, void *ctx)
{
    struct loader *l = ctx;
    l->listening = false;
    l->heartbeat_outstanding = false;
    io_timer_disarm(l->loop, &l->heartbeat_deadline);
    loader_update_connected(l);
    if (state != PG_READY)
        return;
    l->listen_q[0] = (struct pg_query){.sql = SQL_LISTEN_CONFIG, .on_done = listen_done, .ctx = l};
    l->listen_q[1] =
        (struct pg_query){.sql = SQL_LISTEN_HEARTBEAT, .on_done = listen_done, .ctx = l};
    pg_conn_submit(c, &l->listen_q[0]);
    pg_conn_submit(c, &l->listen_q[1]);
}

/* Returns the enterprise number named by a payload, or NULL when the payload is malformed. */
static const char *payload_number(json_t *root)
{
    json_t *v = json_is_object(root) ? json_object_get(root, "enterprise_number") : NULL;
    const char *s = json_string_value(v);
    return s && param_valid(PARAM_ENTERPRISE, s, strlen(s)) ? s : NULL;
}

static void listener_notify(struct pg_conn *c, const char *channel, const char *payload, void *ctx)
{
    struct loader *l = ctx;
    if (strcmp(channel, CHANNEL_HEARTBEAT) == 0) {
        if (strcmp(payload, l->instance_id) == 0) {
            l->heartbeat_outstanding = false;
            io_timer_disarm(l->loop, &l->heartbeat_deadline);
        }
        return;
    }
    STAT_INC(l->stats, notifications_received);
    json_t *root = json_loads(payload, JSON_REJECT_DUPLICATES, NULL);
    const char *number = payload_number(root);
    if (number) {
        log_info("notification: enterprise %s", number);
        loader_load(l, number, NULL, true);
        loader_changed(l, number);
    } else {
        STAT_INC(l->stats, notifications_ignored);
        log_warn("ignoring a malformed %s notification (%zu bytes)", CHANNEL_CONFIG,
                 strlen(payload));
    }
    json_decref(root);
}

const struct pg_conn_ops listener_ops = {.on_state = listener_state, .on_notify = listener_notify};

static void heartbeat_sent(struct pg_query *q, const PGresult *res, const char *error)
{
    struct loader *l = container_of(q, struct loader, heartbeat_q);
    l->heartbeat_busy = false;
    if (error) { /* nothing was sent, so nothing is owed */
        l->heartbeat_outstanding = false;
        io_timer_disarm(l->loop, &l->heartbeat_deadline);
    }
}

static void on_heartbeat(struct io_loop *loop, struct io_timer *t)
{
    struct loader *l = container_of(t, struct loader, heartbeat_timer);
    io_timer_arm(loop, t, l->set->heartbeat_interval);
    if (!l->listening || l->heartbeat_busy || l->heartbeat_outstanding ||
        pg_conn_state(l->query) != PG_READY)
        return;
    /* Owed from the moment it is sent: the echo may arrive on the listener before the
     * pg_notify result arrives on the query connection. */
    l->heartbeat_busy = true;
    l->heartbeat_outstanding = true;
    io_timer_arm(loop, &l->heartbeat_deadline, l->set->heartbeat_timeout);
    l->heartbeat_q =
        (struct pg_query){.sql = SQL_HEARTBEAT, .nparams = 1, .on_done = heartbeat_sent};
    l->heartbeat_q.params[0] = l->instance_id;
    pg_conn_submit(l->query, &l->heartbeat_q);
}

static void on_heartbeat_missed(struct io_loop *loop, struct io_timer *t)
{
    struct loader *l = container_of(t, struct loader, heartbeat_deadline);
    if (!l->heartbeat_outstanding)
        return;
    l->heartbeat_outstanding = false;
    log_warn("listener missed its heartbeat for %.1fs: treating it as dropped",
             l->set->heartbeat_timeout);
    pg_conn_reset(l->listener, "heartbeat not received");
}

void listener_init(struct loader *l)
{
    l->heartbeat_timer.fn = on_heartbeat;
    l->heartbeat_deadline.fn = on_heartbeat_missed;
    io_timer_arm(l->loop, &l->heartbeat_timer, l->set->heartbeat_interval);
}
