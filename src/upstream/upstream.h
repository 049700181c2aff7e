/*
 * Outgoing HTTP for dispatch and look-ups: one libcurl multi handle driven by the I/O loop through
 * libcurl's multi-socket API, so thousands of transfers share one thread and keep-alive
 * connections are reused per target. Nothing here blocks. All calls on the loop thread.
 */
#pragma once
#include <stddef.h>

#include "io/loop.h"
#include "util/buf.h"

#define UPSTREAM_MAX_RESPONSE (1024 * 1024)

struct upstream;
struct upstream_req;

/* status: the HTTP status, or 0 when no response came (error says why: timeout, refused, ...).
 * body is the response body (NUL-terminated, at most UPSTREAM_MAX_RESPONSE bytes). The callback
 * owns r again from here on. */
typedef void (*upstream_done_fn)(struct upstream_req *r, long status, const char *body, size_t len,
                                 const char *error);

struct upstream_req {
    const char *method; /* "GET" or "POST" */
    char *url;          /* owned by the caller */
    const char *body;   /* POST body (JSON), owned by the caller until done */
    size_t body_len;
    double timeout; /* seconds, whole transfer */
    upstream_done_fn done;
    void *ctx;
    /* internal */
    struct upstream_req *prev, *next; /* in flight */
    void *easy;
    struct buf response;
};

/* max_per_host bounds parallel connections to one target (0: unlimited). */
struct upstream *upstream_new(struct io_loop *loop, long max_per_host);
/* Fails every transfer still running (status 0, "shutting down"), then frees. */
void upstream_free(struct upstream *u);

void upstream_send(struct upstream *u, struct upstream_req *r);
/* Transfers in flight. */
size_t upstream_active(const struct upstream *u);
