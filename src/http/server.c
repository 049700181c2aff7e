/*
 * libmicrohttpd server (see server.h). Pitfalls of libmicrohttpd 0.9.75 handled here: the answer is
 * queued on the second call of the access handler (queuing on the first forces Connection: close),
 * bodies are consumed through *upload_data_size, the pool size is passed only when > 1, and URL
 * unescaping is switched off so that path parameters are decoded (and rejected) by our own rules.
 *
 * Shutdown: `gate` counts suspended requests and carries a CLOSING bit; once it is set no request
 * can suspend, so once the count reaches zero it stays there and the daemon can be stopped
 * without a suspended connection left behind (libmicrohttpd aborts in that case).
 */
#include "http/server.h"

#include <microhttpd.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/listen.h"
#include "http/request.h"
#include "http/router.h"
#include "util/log.h"
#include "util/xalloc.h"

#define GATE_CLOSING (1ul << 62)

/* One libmicrohttpd daemon (one epoll thread) per listening socket of the SO_REUSEPORT group. */
struct http_server {
    struct app *app;
    atomic_ulong gate;
    int n;
    struct MHD_Daemon **daemons;
};

/* Per-request state: the handler-visible request plus what the server needs around it. */
struct conn_req {
    struct http_request req;
    struct http_server *srv;
    http_handler_fn fn;
};

/* Reserves a suspension slot; false once the server is closing. */
static bool gate_enter(struct http_server *s)
{
    unsigned long v = atomic_load(&s->gate);
    do {
        if (v & GATE_CLOSING)
            return false;
    } while (!atomic_compare_exchange_weak(&s->gate, &v, v + 1));
    return true;
}

static void gate_leave(struct http_server *s)
{
    atomic_fetch_sub(&s->gate, 1);
}

bool http_suspend(struct http_request *req)
{
    struct conn_req *cr = (struct conn_req *)req;
    if (!gate_enter(cr->srv))
        return false;
    MHD_suspend_connection(req->conn);
    req->suspended = true;
    return true;
}

const char *http_query(struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

void http_resume(struct http_request *req)
{
    MHD_resume_connection(req->conn);
}

static enum MHD_Result queue_reply(struct MHD_Connection *conn, struct http_reply *rep)
{
    struct MHD_Response *resp;
    if (rep->niov == 1 && !rep->release) {
        resp = MHD_create_response_from_buffer(rep->iov[0].len, (void *)rep->iov[0].base,
                                               MHD_RESPMEM_PERSISTENT);
    } else {
        struct MHD_IoVec iov[HTTP_IOV_MAX];
        for (unsigned i = 0; i < rep->niov; i++) {
            iov[i].iov_base = rep->iov[i].base;
            iov[i].iov_len = rep->iov[i].len;
        }
        resp = MHD_create_response_from_iovec(iov, rep->niov, rep->release, rep->release_arg);
    }
    if (!resp) {
        if (rep->release)
            rep->release(rep->release_arg);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result r = MHD_queue_response(conn, (unsigned)rep->status, resp);
    MHD_destroy_response(resp);
    return r;
}

static enum MHD_Result add_size(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    size_t *sum = cls;
    *sum += strlen(key) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

/* The size of the request head as received, near enough: line, headers and query arguments. */
static size_t head_size(struct MHD_Connection *conn, const char *url, const char *method)
{
    size_t sum = strlen(method) + strlen(url) + 12;
    MHD_get_connection_values(conn, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND, add_size, &sum);
    return sum;
}

/* Per-connection state, made when the connection is accepted and reused by each of its requests,
 * so that answering a hit allocates nothing of ours. */
struct conn_state {
    struct conn_req cr;
    struct buf out; /* the reply buffer of the request in progress (http_request.out) */
    bool head_seen; /* a request head has arrived: --idle-timeout applies from now on */
};

/* A reply buffer grown past this by one large answer is given back after it, so an idle
 * connection keeps at most this much. */
#define OUT_KEEP (64 * 1024)

/* Gives conn the timeout `secs`. Skipped when the two timeouts are equal: then every connection
 * keeps the daemon's and stays off libmicrohttpd's list of connections with their own. */
static void conn_timeout(struct MHD_Connection *conn, const struct settings *set, double secs)
{
    if (set->head_timeout != set->idle_timeout)
        MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)secs);
}

/* libmicrohttpd's connection notifications. The daemon's timeout is --idle-timeout; a new
 * connection gets --head-timeout until its first head arrives. Connections with a timeout other
 * than the daemon's are visited on every turn of libmicrohttpd's event loop, so each keeps one
 * only as long as it has not sent a head. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    const struct settings *set = ((struct http_server *)cls)->app->settings;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        struct conn_state *cs = xcalloc(1, sizeof *cs);
        /* the largest answer: a config at --max-config-bytes, escaped, with its wrapper */
        buf_init(&cs->out, (size_t)set->max_config_bytes * 2 + 65536);
        *socket_context = cs;
        conn_timeout(conn, set, set->head_timeout);
    } else {
        struct conn_state *cs = *socket_context;
        if (cs)
            buf_deinit(&cs->out);
        free(cs);
        *socket_context = NULL;
    }
}

static enum MHD_Result first_call(struct http_server *s, struct MHD_Connection *conn,
                                  const char *url, const char *method, void **con_cls)
{
    const struct settings *set = s->app->settings;
    struct conn_state *cs =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT)->socket_context;
    if (!cs->head_seen) {
        cs->head_seen = true;
        conn_timeout(conn, set, set->idle_timeout);
    }
    if (cs->out.cap > OUT_KEEP)
        buf_deinit(&cs->out);
    buf_reset(&cs->out);
    struct conn_req *cr = &cs->cr;
    memset(cr, 0, sizeof *cr);
    cr->req.out = &cs->out;
    cr->srv = s;
    cr->req.conn = conn;
    cr->req.method = method;
    cr->req.path = url;
    buf_init(&cr->req.body, (size_t)set->max_body);
    *con_cls = cr;

    struct http_reply rep = {0};
    if (head_size(conn, url, method) > (size_t)set->max_head) {
        reply_error(&rep, 431, "request head too large");
        return queue_reply(conn, &rep);
    }
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > (unsigned long long)set->max_body) {
        reply_error(&rep, 413, "request body too large");
        return queue_reply(conn, &rep);
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct http_server *s = cls;
    struct conn_req *cr = *con_cls;
    if (!cr)
        return first_call(s, conn, url, method, con_cls);
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        /* A chunked body past the limit: libmicrohttpd 0.9.75 cannot answer before the body
         * ends (MHD_queue_response is refused mid-upload), so the connection is closed; a
         * Content-Length over the limit is answered 413 in first_call. */
        if (buf_append(&cr->req.body, upload_data, n) != 0)
            return MHD_NO;
        return MHD_YES;
    }
    struct http_reply rep = {0};
    if (cr->req.suspended) { /* called again after http_resume */
        cr->req.suspended = false;
        cr->req.resumed = true;
        gate_leave(s);
    } else {
        struct route_match m = router_match(method, url, &cr->req);
        if (!m.fn) {
            reply_error(&rep, m.status, m.detail);
            return queue_reply(conn, &rep);
        }
        cr->fn = m.fn;
    }
    cr->fn(s->app, &cr->req, &rep);
    if (rep.status == 0)
        return MHD_YES; /* suspended: answered after http_resume */
    return queue_reply(conn, &rep);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct conn_req *cr = *con_cls;
    if (!cr)
        return;
    buf_deinit(&cr->req.body);
    entry_unref(cr->req.op.entry);
    if (cr->req.ctx_free)
        cr->req.ctx_free(cr->req.ctx);
    *con_cls = NULL; /* cr itself belongs to the connection (struct conn_state) */
}

static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    return strlen(s); /* path parameters are decoded by util/params.c */
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    log_debug("http: %s", line);
}

/* Starts daemon i (of s->n) on the listening socket fd with its share of --max-connections; the
 * daemon owns fd from then on. */
static struct MHD_Daemon *daemon_start(struct http_server *s, int i, int fd)
{
    const struct settings *set = s->app->settings;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (set->listen_addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* The pool holds the request head and bookkeeping; answers are sent from our own buffers.
     * libmicrohttpd starts a request's read buffer at half the pool and grows it into the rest
     * as a long head arrives, so --max-head plus 4 KiB fits a head at the limit with some 70
     * headers' bookkeeping, and leaves room for our own JSON 431 on heads somewhat over it
     * (a head larger than the pool gets libmicrohttpd's built-in 431). Not larger:
     * libmicrohttpd zeroes the whole pool before every request on a kept-alive connection,
     * measured at 15 % of the user-space CPU of a hit with the 20 KiB pool this used to be
     * (docs/PERFORMANCE-NOTES.md, section 13). */
    size_t pool = (size_t)set->max_head + 4096;
    /* the connection limit split as libmicrohttpd's own thread pool splits it */
    long limit = set->max_connections / s->n + (i < set->max_connections % s->n);
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_LISTEN_SOCKET, fd, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)pool, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)set->idle_timeout, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)limit, NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, NULL},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, s},
        {MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)no_unescape, NULL},
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    return MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_ARRAY, opts,
                            MHD_OPTION_END);
}

struct http_server *http_server_start(struct app *app)
{
    const struct settings *set = app->settings;
    struct http_server *s = xcalloc(1, sizeof *s);
    s->app = app;
    /* every thread needs a share of at least one connection */
    s->n = set->threads < set->max_connections ? set->threads : (int)set->max_connections;
    s->daemons = xcalloc((size_t)s->n, sizeof *s->daemons);
    int *fds = xcalloc((size_t)s->n, sizeof *fds);
    if (listen_group_open(&set->listen_addr, s->n, 1024, fds) < 0) {
        log_error("cannot listen on %s: %s", set->listen, strerror(errno));
        free(fds);
        free(s->daemons);
        free(s);
        return NULL;
    }
    int n = s->n;
    for (int i = 0; i < n; i++) {
        s->daemons[i] = daemon_start(s, i, fds[i]);
        if (!s->daemons[i]) {
            log_error("cannot start HTTP thread %d of %d on %s", i + 1, n, set->listen);
            listen_group_close(fds + i, n - i); /* the started daemons close their own */
            s->n = i;
            http_server_stop(s);
            free(fds);
            return NULL;
        }
    }
    free(fds);
    log_info("listening on http://%s with %d threads", set->listen, s->n);
    return s;
}

void http_server_close(struct http_server *s)
{
    atomic_fetch_or(&s->gate, GATE_CLOSING);
    /* Each daemon hands its socket back; closing it refuses new connections at once. */
    for (int i = 0; i < s->n; i++) {
        MHD_socket fd = MHD_quiesce_daemon(s->daemons[i]);
        if (fd != MHD_INVALID_SOCKET)
            close(fd);
    }
}

bool http_server_idle(struct http_server *s)
{
    return (atomic_load(&s->gate) & ~GATE_CLOSING) == 0;
}

void http_server_stop(struct http_server *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++)
        MHD_stop_daemon(s->daemons[i]);
    free(s->daemons);
    free(s);
}
