/*
 * libmicrohttpd glue: one daemon per HTTP thread (epoll, its own SO_REUSEPORT socket, answering
 * from the shared cache), request limits of SPEC §3, routing, suspension of requests that wait on
 * the I/O thread, and a graceful close. Nothing outside src/http/ includes microhttpd.h.
 */
#pragma once
#include <stdbool.h>

#include "app.h"

struct http_server;

/* Starts listening on settings->listen_addr; NULL after logging why it could not. */
struct http_server *http_server_start(struct app *app);
/* Any thread: stop accepting connections; requests that would now wait on the I/O thread are
 * answered 503. Suspended requests still complete. */
void http_server_close(struct http_server *s);
/* True when no request is suspended. */
bool http_server_idle(struct http_server *s);
/* After every suspended request was resumed: closes connections and joins the threads. */
void http_server_stop(struct http_server *s);
