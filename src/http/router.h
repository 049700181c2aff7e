/*
 * The route table and its matcher. A path is split on '/', literal segments must match exactly and
 * {placeholders} take one segment each, percent-decoded and validated as SPEC §3 says. A path that
 * matches a route's shape under another method is 405; no shape at all is 404.
 */
#pragma once
#include "http/request.h"

struct route_match {
    http_handler_fn fn; /* NULL: answer status/detail instead */
    int status;
    const char *detail;
    bool has_body; /* the route reads a request body */
};

/* Fills req->params on success. Pure apart from writing req->params. */
struct route_match router_match(const char *method, const char *path, struct http_request *req);
