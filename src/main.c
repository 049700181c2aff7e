/*
 * Start-up and shutdown, nothing else: settings, signals, the HTTP server (libmicrohttpd's
 * threads), and the I/O loop, which runs on the main thread and owns every database connection
 * and timer. SIGTERM/SIGINT arrive through a signalfd on that loop: stop accepting, let suspended
 * requests finish (bounded), then stop.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "cache/rcu.h"
#include "db/loader.h"
#include "db/migrate.h"
#include "http/server.h"
#include "dispatch/dedup.h"
#include "dispatch/dispatcher.h"
#include "io/loop.h"
#include "lookup/lookup.h"
#include "upstream/upstream.h"
#include "settings.h"
#include "util/log.h"
#include "util/timeutil.h"

#define SHUTDOWN_GRACE 5.0 /* seconds suspended requests and deliveries get to finish */

struct shutdown {
    struct io_watch signals;
    struct io_timer poll;
    struct http_server *http;
    struct dispatcher *dispatcher;
    double deadline;
};

static struct shutdown shutdown_state;

static void check_drained(struct io_loop *loop, struct io_timer *t)
{
    bool idle = http_server_idle(shutdown_state.http) && dispatcher_idle(shutdown_state.dispatcher);
    if (idle || time_mono_now() >= shutdown_state.deadline) {
        io_loop_stop(loop);
        return;
    }
    io_timer_arm(loop, t, 0.01);
}

static void on_signal(struct io_loop *loop, int fd, uint32_t events, void *ctx)
{
    struct signalfd_siginfo si;
    if (read(fd, &si, sizeof si) != sizeof si || shutdown_state.deadline > 0)
        return;
    log_info("signal %u received: shutting down", si.ssi_signo);
    http_server_close(shutdown_state.http);
    dispatcher_quiesce(shutdown_state.dispatcher); /* finish and record deliveries under way */
    shutdown_state.deadline = time_mono_now() + SHUTDOWN_GRACE;
    shutdown_state.poll.fn = check_drained;
    io_timer_arm(loop, &shutdown_state.poll, 0);
}

/* Blocks SIGINT/SIGTERM in every thread (threads inherit the mask) and returns a signalfd. */
static int signals_to_fd(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

static void drop_lookups(void *lookup, const char *number)
{
    lookup_invalidate(lookup, number);
}

static int serve(struct settings *set)
{
    static struct stats stats;
    struct app app = {.settings = set, .stats = &stats, .started_mono = time_mono_now()};
    int sfd = signals_to_fd();
    if (sfd < 0) {
        log_error("cannot set up signal handling");
        return 1;
    }
    struct io_loop *loop = io_loop_new();
    struct upstream *up = upstream_new(loop, 0);
    app.store = cache_store_new();
    app.loader = loader_new(loop, set, app.store, &stats);
    app.dedup = dedup_new((size_t)set->dedup_capacity);
    app.lookup = lookup_new(loop, set, &stats, up);
    loader_on_change(app.loader, drop_lookups, app.lookup);
    app.dispatcher = dispatcher_new(loop, set, &stats, up, app.dedup);
    int rc = 1;
    if (app.dispatcher && (shutdown_state.http = http_server_start(&app)) != NULL) {
        shutdown_state.signals = (struct io_watch){.fd = sfd, .events = EPOLLIN, .fn = on_signal};
        io_watch_add(loop, &shutdown_state.signals);
        shutdown_state.dispatcher = app.dispatcher;
        loader_start(app.loader);
        dispatcher_start(app.dispatcher);
        io_loop_run(loop);
        rc = 0;
    }
    /* Everything below answers what still waits, so that no suspended request is left. */
    io_loop_run_pending(loop); /* requests handed over just before the stop */
    loader_free(app.loader);
    dispatcher_close(app.dispatcher);
    upstream_free(up);               /* look-ups answer nulls; deliveries end unrecorded */
    dispatcher_free(app.dispatcher); /* queued events go to the spool */
    http_server_stop(shutdown_state.http);
    lookup_free(app.lookup);
    dedup_free(app.dedup);
    io_loop_free(loop);
    cache_store_free(app.store);
    close(sfd);
    if (rc == 0)
        log_info("stopped");
    return rc;
}

int main(int argc, char **argv)
{
    tzset();
    struct settings set;
    int r = settings_load(&set, argc, argv, (const char *(*)(const char *))getenv, stdout, stderr);
    if (r != 0) {
        settings_deinit(&set);
        return r > 0 ? 0 : 2;
    }
    if (log_init(set.log_level, set.log_file) != 0) {
        fprintf(stderr, "integration_cache: cannot open the log file given by --log-file "
                        "(IC_LOG_FILE)\n");
        settings_deinit(&set);
        return 2;
    }
    int rc = set.command == CMD_MIGRATE ? migrate_run(&set) : serve(&set);
    settings_deinit(&set);
    log_deinit();
    return rc;
}
