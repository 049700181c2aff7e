/*
 * Operators' routes (SPEC §4): /stats, /health, /ready. /stats prints every counter of stats.h's
 * table under its own name, then the derived members; /health raises the runbook's alerts.
 */
#include <math.h>
#include <stdio.h>

#include "http/handlers.h"
#include "util/timeutil.h"

static double rate(unsigned long hits, unsigned long misses)
{
    unsigned long total = hits + misses;
    return round(1000.0 * (double)hits / (double)(total ? total : 1)) / 10.0;
}

static void append_iso_or_null(struct buf *b, const char *name, double epoch)
{
    if (epoch <= 0) {
        buf_printf(b, ",\"%s\":null", name);
        return;
    }
    char iso[32];
    time_format_iso(epoch, iso, sizeof iso);
    buf_printf(b, ",\"%s\":\"%s\"", name, iso);
}

void handle_stats(struct app *app, struct http_request *req, struct http_reply *rep)
{
    struct stats *st = app->stats;
    unsigned long hits = STAT_GET(st, hits), misses = STAT_GET(st, misses);
    unsigned long chits = STAT_GET(st, config_hits), cmisses = STAT_GET(st, config_misses);
    unsigned long size = atomic_load(&st->cache_size), live = cache_count(app->store);
    struct buf b;
    buf_init(&b, 8192);
    buf_printf(&b, "{\"hits\":%lu,\"misses\":%lu,\"refreshes\":%lu,\"cache_size\":%lu", hits,
               misses, STAT_GET(st, refreshes), size);
    buf_printf(&b, ",\"config_hits\":%lu,\"config_misses\":%lu,\"config_cache_size\":%lu", chits,
               cmisses, size);
    append_iso_or_null(&b, "last_full_refresh", atomic_load(&st->last_refresh));
    buf_printf(&b, ",\"total_requests\":%lu,\"hit_rate_percent\":%.1f", hits + misses,
               rate(hits, misses));
    buf_printf(&b, ",\"config_hit_rate_percent\":%.1f", rate(chits, cmisses));
    buf_printf(&b, ",\"cache_entries\":%lu,\"config_cache_entries\":%lu", live, live);
#define STATS_JSON(name) buf_printf(&b, ",\"" #name "\":%lu", STAT_GET(st, name));
    STATS_EXTRA_COUNTERS(STATS_JSON)
#undef STATS_JSON
    buf_printf(&b, ",\"listener_reconnects\":%lu", STAT_GET(st, listener_reconnects));
    buf_printf(&b, ",\"last_refresh_ms\":%.1f", atomic_load(&st->last_refresh_ms));
    buf_printf(&b, ",\"database_connected\":%s", atomic_load(&st->db_connected) ? "true" : "false");
    if (app->dispatcher)
        dispatcher_stats_json(app->dispatcher, &b);
    buf_printf(&b, ",\"uptime_seconds\":%.1f}", time_mono_now() - app->started_mono);
    reply_buf(rep, 200, &b);
}

/* The runbook's alerts, in one table: a condition and the text operators see. */
static void collect_alerts(struct app *app, const char **alerts, int *n)
{
    struct stats *st = app->stats;
    unsigned long hits = STAT_GET(st, hits), total = hits + STAT_GET(st, misses);
    double last = atomic_load(&st->last_refresh_mono);
    double since = time_mono_now() - (last > 0 ? last : app->started_mono);
    const struct {
        bool raised;
        const char *text;
    } rules[] = {
        {total >= 100 && 100.0 * (double)hits / (double)total < 50.0, "hit rate below 50%"},
        {cache_count(app->store) == 0, "cache empty"},
        {since > 600, "no successful full refresh for more than 10 minutes"},
        {!atomic_load(&st->db_connected), "database disconnected"},
    };
    *n = 0;
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (rules[i].raised)
            alerts[(*n)++] = rules[i].text;
}

void handle_health(struct app *app, struct http_request *req, struct http_reply *rep)
{
    const char *alerts[8];
    int n;
    collect_alerts(app, alerts, &n);
    struct buf b;
    buf_init(&b, 4096);
    buf_printf(&b,
               "{\"status\":\"%s\",\"cache_size\":%zu,\"database_connected\":%s,"
               "\"uptime_seconds\":%.1f,\"alerts\":[",
               n ? "degraded" : "healthy", cache_count(app->store),
               atomic_load(&app->stats->db_connected) ? "true" : "false",
               time_mono_now() - app->started_mono);
    for (int i = 0; i < n; i++)
        buf_printf(&b, "%s\"%s\"", i ? "," : "", alerts[i]);
    buf_append_str(&b, "]}");
    reply_buf(rep, 200, &b);
}

void handle_ready(struct app *app, struct http_request *req, struct http_reply *rep)
{
    if (atomic_load(&app->stats->ready) && dispatcher_ready(app->dispatcher))
        reply_static(rep, 200, "{\"status\":\"ready\"}");
    else
        reply_static(rep, 503, "{\"detail\":\"initial cache load not finished\"}");
}
