/*
 * libcurl multi-socket loop on our epoll (see upstream.h). libcurl tells us which sockets to watch
 * (socket callback) and when to call it back (timer callback); we tell it which socket became
 * ready. Each watched socket gets a small io_watch record, attached to the socket with
 * curl_multi_assign and freed when libcurl says it is done with the socket.
 */
#include "upstream/upstream.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/container.h"
#include "util/log.h"
#include "util/xalloc.h"

/* Finished easy handles kept for the next transfers (curl_easy_reset between them): a new handle
 * per delivery (curl_easy_init and curl_easy_cleanup) cost about 4 % of the I/O thread while the
 * outbox drained, the reset 1.3 % (docs/PERFORMANCE-NOTES.md, section 13). The connections
 * themselves are pooled by the multi handle either way. */
#define UPSTREAM_SPARE_HANDLES 64

struct upstream {
    struct io_loop *loop;
    CURLM *multi;
    struct io_timer timer;
    size_t active;
    bool closing;
    struct upstream_req *inflight; /* every transfer started and not yet finished */
    struct curl_slist *headers;    /* the same request headers for every transfer */
    CURL *spare[UPSTREAM_SPARE_HANDLES];
    size_t nspare;
};

struct sock {
    struct io_watch watch;
    struct upstream *u;
};

static void unlink_req(struct upstream *u, struct upstream_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        u->inflight = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    u->active--;
}

/* Detaches r from libcurl and hands the outcome to its callback. */
static void finish(struct upstream *u, struct upstream_req *r, long status, const char *error)
{
    curl_multi_remove_handle(u->multi, r->easy);
    if (u->nspare < UPSTREAM_SPARE_HANDLES && !u->closing) {
        curl_easy_reset(r->easy);
        u->spare[u->nspare++] = r->easy;
    } else {
        curl_easy_cleanup(r->easy);
    }
    r->easy = NULL;
    unlink_req(u, r);
    size_t len = r->response.len;
    char *body = buf_steal(&r->response, NULL);
    r->done(r, status, body, len, error);
    free(body);
}

static void check_done(struct upstream *u)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(u->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode code = msg->data.result;
        struct upstream_req *r = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
        long status = 0;
        if (code == CURLE_OK)
            curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        finish(u, r, status, code == CURLE_OK ? NULL : curl_easy_strerror(code));
    }
}

static void on_socket_ready(struct io_loop *loop, int fd, uint32_t events, void *ctx)
{
    struct sock *s = ctx;
    struct upstream *u = s->u;
    int flags = 0;
    if (events & EPOLLIN)
        flags |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        flags |= CURL_CSELECT_OUT;
    if (events & (EPOLLERR | EPOLLHUP))
        flags |= CURL_CSELECT_ERR;
    int running;
    curl_multi_socket_action(u->multi, fd, flags, &running);
    check_done(u);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct upstream *u = userp;
    struct sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            io_watch_del(u->loop, &s->watch);
            free(s);
            curl_multi_assign(u->multi, fd, NULL);
        }
        return 0;
    }
    uint32_t events = 0;
    if (what & CURL_POLL_IN)
        events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        events |= EPOLLOUT;
    if (!s) {
        s = xcalloc(1, sizeof *s);
        s->u = u;
        s->watch = (struct io_watch){.fd = fd, .events = events, .fn = on_socket_ready, .ctx = s};
        io_watch_add(u->loop, &s->watch);
        curl_multi_assign(u->multi, fd, s);
    } else {
        io_watch_modify(u->loop, &s->watch, events);
    }
    return 0;
}

static void on_timer(struct io_loop *loop, struct io_timer *t)
{
    struct upstream *u = container_of(t, struct upstream, timer);
    int running;
    curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(u);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct upstream *u = userp;
    if (timeout_ms < 0)
        io_timer_disarm(u->loop, &u->timer);
    else
        io_timer_arm(u->loop, &u->timer, (double)timeout_ms / 1000.0);
    return 0;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    struct upstream_req *r = userp;
    size_t n = size * nmemb;
    return buf_append(&r->response, data, n) == 0 ? n : 0; /* 0 aborts an oversized answer */
}

struct upstream *upstream_new(struct io_loop *loop, long max_per_host)
{
    static bool global_done;
    if (!global_done) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        global_done = true;
    }
    struct upstream *u = xcalloc(1, sizeof *u);
    u->loop = loop;
    u->multi = curl_multi_init();
    u->timer.fn = on_timer;
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_per_host);
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, 256L);
    u->headers = curl_slist_append(NULL, "Content-Type: application/json");
    u->headers = curl_slist_append(u->headers, "Expect:"); /* no 100-continue round trip */
    return u;
}

void upstream_send(struct upstream *u, struct upstream_req *r)
{
    if (u->closing) { /* a retry asked for while shutting down */
        r->done(r, 0, "", 0, "shutting down");
        return;
    }
    CURL *easy = u->nspare ? u->spare[--u->nspare] : curl_easy_init();
    buf_init(&r->response, UPSTREAM_MAX_RESPONSE);
    r->easy = easy;
    curl_easy_setopt(easy, CURLOPT_URL, r->url);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, r);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, u->headers);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)(r->timeout * 1000));
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(r->timeout * 1000));
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
    if (strcmp(r->method, "POST") == 0) {
        curl_easy_setopt(easy, CURLOPT_POST, 1L);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long)r->body_len);
    }
    u->active++;
    r->prev = NULL;
    r->next = u->inflight;
    if (u->inflight)
        u->inflight->prev = r;
    u->inflight = r;
    curl_multi_add_handle(u->multi, easy);
}

size_t upstream_active(const struct upstream *u)
{
    return u->active;
}

void upstream_free(struct upstream *u)
{
    if (!u)
        return;
    u->closing = true;
    while (u->inflight)
        finish(u, u->inflight, 0, "shutting down");
    io_timer_disarm(u->loop, &u->timer);
    while (u->nspare)
        curl_easy_cleanup(u->spare[--u->nspare]);
    curl_multi_cleanup(u->multi);
    curl_slist_free_all(u->headers);
    free(u);
}
