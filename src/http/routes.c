/*
 * Every route of the service, in one table: method, path pattern, handler. {e} is an enterprise
 * number, {t} an integration type, {p} a phone (util/params.h). Adding a route is one line here.
 */
#include <string.h>

#include "http/handlers.h"
#include "http/router.h"

struct route {
    const char *method;
    const char *pattern;
    http_handler_fn fn;
};

static const struct route routes[] = {
    {"GET", "/integrations/{e}", handle_integrations},
    {"GET", "/config/{e}", handle_config},
    {"GET", "/config/{e}/{t}", handle_config_type},
    {"PUT", "/config/{e}/{t}", handle_put_config},
    {"POST", "/cache/invalidate/{e}", handle_invalidate},
    {"POST", "/cache/refresh", handle_refresh},
    {"GET", "/cache/entries", handle_entries},
    {"POST", "/dispatch/call-event", handle_dispatch},
    {"POST", "/dispatch/call-event/", handle_dispatch},
    {"GET", "/customer-name/{e}/{p}", handle_customer_name},
    {"GET", "/customer-profile/{e}/{p}", handle_customer_profile},
    {"GET", "/responsible-extension/{e}/{p}", handle_responsible_extension},
    {"GET", "/stats", handle_stats},
    {"GET", "/health", handle_health},
    {"GET", "/ready", handle_ready},
};

#define NROUTES (sizeof routes / sizeof routes[0])

static int placeholder_kind(const char *seg, size_t len)
{
    if (len != 3 || seg[0] != '{' || seg[2] != '}')
        return -1;
    switch (seg[1]) {
    case 'e':
        return PARAM_ENTERPRISE;
    case 't':
        return PARAM_TYPE;
    case 'p':
        return PARAM_PHONE;
    }
    return -1;
}

/* Length of the segment starting at s (up to '/' or the end). */
static size_t seg_len(const char *s)
{
    return strcspn(s, "/");
}

/* Shape match: literals equal, one non-empty segment per placeholder, same segment count. */
static bool shape_matches(const char *pattern, const char *path)
{
    while (*pattern == '/' && *path == '/') {
        pattern++;
        path++;
        size_t pl = seg_len(pattern), sl = seg_len(path);
        if (placeholder_kind(pattern, pl) >= 0) {
            if (sl == 0)
                return false;
        } else if (pl != sl || strncmp(pattern, path, pl) != 0) {
            return false;
        }
        pattern += pl;
        path += sl;
    }
    return *pattern == '\0' && *path == '\0';
}

/* Decodes and validates the placeholders of a shape-matched path into req->params. */
static const char *extract_params(const char *pattern, const char *path, struct http_request *req)
{
    int n = 0;
    while (*pattern == '/') {
        pattern++;
        path++;
        size_t pl = seg_len(pattern), sl = seg_len(path);
        int kind = placeholder_kind(pattern, pl);
        if (kind >= 0) {
            if (n >= HTTP_MAX_PARAMS || param_parse(kind, path, sl, req->params[n]) != 0)
                return param_error(kind);
            n++;
        }
        pattern += pl;
        path += sl;
    }
    return NULL;
}

static bool method_is(const char *route_method, const char *method)
{
    if (strcmp(route_method, method) == 0)
        return true;
    return strcmp(route_method, "GET") == 0 && strcmp(method, "HEAD") == 0;
}

struct route_match router_match(const char *method, const char *path, struct http_request *req)
{
    bool shape_seen = false;
    for (size_t i = 0; i < NROUTES; i++) {
        if (!shape_matches(routes[i].pattern, path))
            continue;
        shape_seen = true;
        if (!method_is(routes[i].method, method))
            continue;
        const char *bad = extract_params(routes[i].pattern, path, req);
        if (bad)
            return (struct route_match){.status = 400, .detail = bad};
        bool body = strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0;
        return (struct route_match){.fn = routes[i].fn, .has_body = body};
    }
    if (shape_seen)
        return (struct route_match){.status = 405, .detail = "Method Not Allowed"};
    return (struct route_match){.status = 404, .detail = "Not Found"};
}
