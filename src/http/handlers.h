/* Request handlers, one file per resource; the route table in routes.c maps paths to them. */
#pragma once
#include "http/request.h"

/* routes_cache.c: SPEC §4 cache reads and writes */
void handle_integrations(struct app *app, struct http_request *req, struct http_reply *rep);
void handle_config(struct app *app, struct http_request *req, struct http_reply *rep);
void handle_config_type(struct app *app, struct http_request *req, struct http_reply *rep);
void handle_put_config(struct app *app, struct http_request *req, struct http_reply *rep);
/* routes_admin.c: cache administration */
void handle_invalidate(struct app *app, struct http_request *req, struct http_reply *rep);
void handle_refresh(struct app *app, struct http_request *req, struct http_reply *rep);
void handle_entries(struct app *app, struct http_request *req, struct http_reply *rep);
/* routes_dispatch.c: call-event intake */
void handle_dispatch(struct app *app, struct http_request *req, struct http_reply *rep);
/* routes_lookup.c: customer look-ups via the primary CRM */
void handle_customer_name(struct app *app, struct http_request *req, struct http_reply *rep);
void handle_customer_profile(struct app *app, struct http_request *req, struct http_reply *rep);
void handle_responsible_extension(struct app *app, struct http_request *req,
                                  struct http_reply *rep);
/* routes_ops.c: operators' routes */
void handle_stats(struct app *app, struct http_request *req, struct http_reply *rep);
void handle_health(struct app *app, struct http_request *req, struct http_reply *rep);
void handle_ready(struct app *app, struct http_request *req, struct http_reply *rep);
