/*
 * The server's small interface to request handlers: a request in (method, decoded path
 * parameters, body), a status and a body out. Handlers never see libmicrohttpd, so the front end
 * could be replaced without touching them.
 *
 * A reply body is up to HTTP_IOV_MAX byte ranges sent in order, plus an optional release callback
 * that runs once the server no longer needs the bytes (e.g. to drop a cache entry reference).
 * Every body is JSON.
 *
 * A handler that must wait for the I/O thread calls http_suspend() first, then hands the request
 * over (loader_submit with req->op). When the I/O thread calls http_resume(), the server calls the
 * same handler again on an HTTP thread with req->resumed set, and the handler answers from the
 * outcome in req->op.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "app.h"
#include "db/loader.h"
#include "util/buf.h"
#include "util/params.h"

#define HTTP_IOV_MAX 4
#define HTTP_MAX_PARAMS 2

struct http_reply {
    int status; /* 0: no reply yet (suspended) */
    struct {
        const void *base;
        size_t len;
    } iov[HTTP_IOV_MAX];
    unsigned niov;
    void (*release)(void *arg);
    void *release_arg;
};

struct http_request {
    const char *method;
    const char *path;
    char params[HTTP_MAX_PARAMS][PARAM_MAX_LEN + 1];
    struct buf body;
    bool resumed;             /* the handler is called again after http_resume */
    struct loader_request op; /* the I/O-thread work of a suspended request */
    void *ctx;                /* a handler's own per-request state, freed with ctx_free */
    void (*ctx_free)(void *ctx);
    /* The connection's reply buffer, emptied before each request: a handler renders its answer
     * here and calls reply_out(), and nothing is allocated per hit. It is reused by the
     * connection's next request, which libmicrohttpd reads only after this answer is sent. */
    struct buf *out;
    void *conn;     /* server-private */
    bool suspended; /* server-private */
};

/* On the handler's thread, before handing the request to another thread. False when the server
 * is shutting down: then the handler answers 503 instead. */
bool http_suspend(struct http_request *req);
/* Any thread: the handler will be called again to answer. */
void http_resume(struct http_request *req);

/* A query-string argument of the request, or NULL. Valid during the handler call. */
const char *http_query(struct http_request *req, const char *name);

/* Reply helpers. */
void reply_static(struct http_reply *r, int status, const char *body);      /* literal or static */
void reply_owned(struct http_reply *r, int status, char *body, size_t len); /* freed after use */
void reply_buf(struct http_reply *r, int status, struct buf *b);            /* takes b's data */
void reply_out(struct http_reply *r, int status, const struct http_request *req); /* req->out */
/* {"detail": "<text>"} with `detail` escaped as a JSON string. */
void reply_error(struct http_reply *r, int status, const char *detail);

typedef void (*http_handler_fn)(struct app *app, struct http_request *req, struct http_reply *rep);

/* Suspends req and hands req->op (op, number, type, body filled in by the caller) to the I/O
 * thread; the handler runs again with req->resumed set. Answers 503 when shutting down. */
void http_defer(struct app *app, struct http_request *req, struct http_reply *rep,
                enum loader_op op);

/* Which counters a read moves (SPEC §4 /stats): the /integrations pair, the /config pair, none. */
enum read_count { COUNT_STATUS, COUNT_CONFIG, COUNT_NONE };

/* The shared read path: a fresh entry for `number` (a reference the caller drops), counted as a
 * hit; or NULL on a miss, counted, after the request was handed to the I/O thread to load it
 * (http_defer): the handler then runs again with req->resumed set and the outcome in req->op. */
struct cache_entry *http_read_entry(struct app *app, struct http_request *req,
                                    struct http_reply *rep, const char *number,
                                    enum read_count count);
