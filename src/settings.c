/*
 * The settings table and its parser (see settings.h). Values are checked against their bounds at
 * start-up so a typo stops the service with a message naming the flag and the variable, instead of
 * running with a surprise. The database connection string is marked secret: it is accepted from
 * --db or DATABASE_URL but never echoed, not even in error messages.
 */
#include "settings.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"
#include "util/xalloc.h"

enum setting_type { T_STRING, T_SECONDS, T_INT, T_LONG, T_LISTEN, T_LEVEL, T_URL };

struct setting_def {
    const char *flag;
    const char *env;
    enum setting_type type;
    const char *def; /* NULL: unset */
    double min, max; /* for numbers */
    size_t offset;
    bool secret;
    const char *help;
};

#define OFF(field) offsetof(struct settings, field)

static const struct setting_def defs[] = {
    {"listen", "IC_LISTEN", T_LISTEN, "127.0.0.1:8020", 0, 0, OFF(listen), false,
     "address:port to serve HTTP on (IPv4, or [IPv6]:port); loopback by default"},
    {"db", "DATABASE_URL", T_STRING, NULL, 0, 0, OFF(db), true,
     "libpq connection string; when unset the PG* variables apply (PGHOST, PGPORT, ...)"},
    {"threads", "IC_THREADS", T_INT, "0", 0, 256, OFF(threads), false,
     "HTTP worker threads; 0 means one per core"},
    {"ttl", "IC_TTL", T_SECONDS, "90", 0.05, 86400, OFF(ttl), false,
     "seconds a loaded enterprise is served before it is read again"},
    {"negative-ttl", "IC_NEGATIVE_TTL", T_SECONDS, "5", 0, 3600, OFF(negative_ttl), false,
     "seconds a miss for an enterprise that is not served is remembered"},
    {"refresh-interval", "IC_REFRESH_INTERVAL", T_SECONDS, "240", 1, 86400, OFF(refresh_interval),
     false, "seconds between full refreshes"},
    {"refresh-jitter", "IC_REFRESH_JITTER", T_SECONDS, "60", 0, 86400, OFF(refresh_jitter), false,
     "random 0..N seconds added to each refresh interval"},
    {"cleanup-interval", "IC_CLEANUP_INTERVAL", T_SECONDS, "30", 0.05, 3600, OFF(cleanup_interval),
     false, "seconds between sweeps that drop expired entries"},
    {"heartbeat-interval", "IC_HEARTBEAT_INTERVAL", T_SECONDS, "5", 0.05, 3600,
     OFF(heartbeat_interval), false, "seconds between the listener's self-notifications"},
    {"heartbeat-timeout", "IC_HEARTBEAT_TIMEOUT", T_SECONDS, "10", 0.05, 3600,
     OFF(heartbeat_timeout), false,
     "a heartbeat not back within this treats the listener as dropped"},
    {"reconnect-min", "IC_RECONNECT_MIN", T_SECONDS, "0.5", 0.01, 3600, OFF(reconnect_min), false,
     "first delay before reconnecting to the database"},
    {"reconnect-max", "IC_RECONNECT_MAX", T_SECONDS, "30", 0.01, 3600, OFF(reconnect_max), false,
     "longest delay between reconnection attempts (exponential backoff with jitter)"},
    {"db-timeout", "IC_DB_TIMEOUT", T_SECONDS, "5", 0.1, 600, OFF(db_timeout), false,
     "a query or connection attempt taking longer is abandoned and the connection reset"},
    {"db-prepared", "IC_DB_PREPARED", T_INT, "1", 0, 1, OFF(db_prepared), false,
     "1: statements run often are prepared once per connection; 0 behind a PgBouncer older than "
     "1.21 in transaction pooling mode"},
    {"idle-timeout", "IC_IDLE_TIMEOUT", T_SECONDS, "60", 1, 86400, OFF(idle_timeout), false,
     "seconds an idle keep-alive connection is kept open"},
    {"head-timeout", "IC_HEAD_TIMEOUT", T_SECONDS, "10", 1, 3600, OFF(head_timeout), false,
     "seconds a new connection may take to send its first request head"},
    {"max-head", "IC_MAX_HEAD", T_LONG, "8192", 1024, 1048576, OFF(max_head), false,
     "largest request head in bytes (431 above it)"},
    {"max-body", "IC_MAX_BODY", T_LONG, "1048576", 1024, 67108864, OFF(max_body), false,
     "largest request body in bytes (413 above it)"},
    {"max-connections", "IC_MAX_CONNECTIONS", T_LONG, "4096", 16, 1000000, OFF(max_connections),
     false, "concurrent HTTP connections accepted"},
    {"max-config-bytes", "IC_MAX_CONFIG_BYTES", T_LONG, "1048576", 1024, 67108864,
     OFF(max_config_bytes), false, "largest integrations_config accepted from the database"},
    {"log-file", "IC_LOG_FILE", T_STRING, NULL, 0, 0, OFF(log_file), false,
     "also append the log to this file (e.g. logs/integration_cache.log)"},
    {"log-level", "IC_LOG_LEVEL", T_LEVEL, "info", 0, 0, OFF(log_level), false,
     "debug, info, warn or error"},
    {"retailcrm-url", "IC_RETAILCRM_URL", T_URL, "http://127.0.0.1:8019", 0, 0, OFF(retailcrm_url),
     false, "base URL of the RetailCRM integration service"},
    {"uon-url", "IC_UON_URL", T_URL, "http://127.0.0.1:8022", 0, 0, OFF(uon_url), false,
     "base URL of the U-ON integration service"},
    {"ms-url", "IC_MS_URL", T_URL, "http://127.0.0.1:8023", 0, 0, OFF(ms_url), false,
     "base URL of the MoySklad integration service"},
    {"delivery-timeout", "IC_DELIVERY_TIMEOUT", T_SECONDS, "3", 0.05, 600, OFF(delivery_timeout),
     false, "a delivery to an integration service taking longer counts as failed"},
    {"retry-min", "IC_RETRY_MIN", T_SECONDS, "1", 0.01, 86400, OFF(retry_min), false,
     "first delay before retrying a failed delivery (doubles, with jitter)"},
    {"retry-max", "IC_RETRY_MAX", T_SECONDS, "300", 0.01, 86400, OFF(retry_max), false,
     "longest delay between retries of one delivery"},
    {"retry-horizon", "IC_RETRY_HORIZON", T_SECONDS, "86400", 1, 2592000, OFF(retry_horizon), false,
     "a delivery still failing this long after the event was accepted is abandoned"},
    {"dispatch-poll", "IC_DISPATCH_POLL", T_SECONDS, "0.5", 0.01, 60, OFF(dispatch_poll), false,
     "seconds between outbox polls for due retries and other replicas' events"},
    {"delivery-concurrency", "IC_DELIVERY_CONCURRENCY", T_LONG, "32", 1, 10000,
     OFF(delivery_concurrency), false,
     "deliveries in flight per integration service (as many again are claimed ahead while no "
     "event waits for its commit)"},
    {"breaker-failures", "IC_BREAKER_FAILURES", T_LONG, "5", 1, 1000, OFF(breaker_failures), false,
     "consecutive failures that open a service's circuit breaker"},
    {"breaker-cooldown", "IC_BREAKER_COOLDOWN", T_SECONDS, "10", 0.05, 3600, OFF(breaker_cooldown),
     false, "seconds an open breaker waits before it lets one probe through"},
    {"intake-connections", "IC_INTAKE_CONNECTIONS", T_LONG, "2", 1, 8, OFF(intake_connections),
     false, "database connections committing accepted events side by side"},
    {"dedup-capacity", "IC_DEDUP_CAPACITY", T_LONG, "100000", 16, 100000000, OFF(dedup_capacity),
     false, "call events remembered for duplicate detection (oldest forgotten first)"},
    {"outbox-retention", "IC_OUTBOX_RETENTION", T_SECONDS, "3600", 300, 31536000,
     OFF(outbox_retention), false, "delivered and abandoned outbox rows are deleted after this"},
    {"spool-dir", "IC_SPOOL_DIR", T_STRING, "var/spool", 0, 0, OFF(spool_dir), false,
     "where accepted events wait, fsync'd, while the database is unreachable"},
    {"instance", "IC_INSTANCE", T_STRING, NULL, 0, 0, OFF(instance), false,
     "this replica's name in the outbox; keep it stable across restarts "
     "(default <hostname>:<listen>)"},
    {"lookup-ttl", "IC_LOOKUP_TTL", T_SECONDS, "90", 0, 86400, OFF(lookup_ttl), false,
     "seconds a customer look-up result (including not found) is reused"},
    {"lookup-timeout", "IC_LOOKUP_TIMEOUT", T_SECONDS, "2.5", 0.05, 60, OFF(lookup_timeout), false,
     "deadline of one customer look-up, both attempts included"},
};

#define NDEFS (sizeof defs / sizeof defs[0])

static int parse_listen(struct settings *s, const char *v)
{
    char host[64];
    const char *colon;
    size_t hlen;
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (!close || close[1] != ':')
            return -1;
        hlen = (size_t)(close - v - 1);
        if (hlen >= sizeof host)
            return -1;
        memcpy(host, v + 1, hlen);
        colon = close + 1;
    } else {
        colon = strrchr(v, ':');
        if (!colon)
            return -1;
        hlen = (size_t)(colon - v);
        if (hlen >= sizeof host)
            return -1;
        memcpy(host, v, hlen);
    }
    host[hlen] = '\0';
    if (colon[1] == '\0' || colon[1 + strspn(colon + 1, "0123456789")] != '\0')
        return -1;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port < 1 || port > 65535)
        return -1;
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    memset(&s->listen_addr, 0, sizeof s->listen_addr);
    struct sockaddr_in *in4 = (struct sockaddr_in *)&s->listen_addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&s->listen_addr;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
    } else {
        return -1;
    }
    if (strlen(v) >= sizeof s->listen)
        return -1;
    snprintf(s->listen, sizeof s->listen, "%s", v);
    return 0;
}

static int parse_number(const char *v, double *out)
{
    if (v[strspn(v, "0123456789.eE+-")] != '\0' || !(*v == '-' || (*v >= '0' && *v <= '9')))
        return -1; /* no hex, no "inf", no leading blanks or '+' */
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(d))
        return -1;
    *out = d;
    return 0;
}

/* Stores value v into the field of def; -1 when it is malformed or out of bounds. */
static int apply(struct settings *s, const struct setting_def *d, const char *v)
{
    char *field = (char *)s + d->offset;
    double num;
    switch (d->type) {
    case T_STRING:
        free(*(char **)field);
        *(char **)field = *v ? xstrdup(v) : NULL;
        return 0;
    case T_URL:
        if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)
            return -1;
        free(*(char **)field);
        *(char **)field = xstrdup(v);
        return 0;
    case T_LISTEN:
        return parse_listen(s, v);
    case T_LEVEL: {
        int lvl = log_level_parse(v);
        if (lvl < 0)
            return -1;
        *(int *)field = lvl;
        return 0;
    }
    case T_SECONDS:
    case T_INT:
    case T_LONG:
        if (parse_number(v, &num) || num < d->min || num > d->max)
            return -1;
        if (d->type != T_SECONDS && num != floor(num))
            return -1;
        if (d->type == T_SECONDS)
            *(double *)field = num;
        else if (d->type == T_INT)
            *(int *)field = (int)num;
        else
            *(long *)field = (long)num;
        return 0;
    }
    return -1;
}

static void report_bad(FILE *err, const struct setting_def *d, const char *v, const char *from)
{
    fprintf(err, "integration_cache: invalid value for --%s (%s)", d->flag, d->env);
    if (!d->secret)
        fprintf(err, " from %s: '%s'", from, v);
    if (d->type == T_SECONDS || d->type == T_INT || d->type == T_LONG)
        fprintf(err, "; expected a %s from %g to %g",
                d->type == T_SECONDS ? "number" : "whole number", d->min, d->max);
    fputc('\n', err);
}

static void print_help(FILE *out)
{
    fprintf(out, "Usage: integration_cache [serve|migrate] [--setting VALUE ...]\n\n"
                 "  serve    run the cache service in the foreground (default)\n"
                 "  migrate  install the notification trigger, outbox and integration_logs "
                 "(idempotent), then exit\n\n"
                 "Settings (flag, environment variable, default):\n");
    for (size_t i = 0; i < NDEFS; i++) {
        const struct setting_def *d = &defs[i];
        fprintf(out, "  --%-18s %-22s %s\n", d->flag, d->env, d->def ? d->def : "(unset)");
        fprintf(out, "      %s\n", d->help);
    }
    fprintf(out, "\nA flag wins over its variable. Durations are seconds (decimals allowed).\n"
                 "Prefer PGPASSWORD or ~/.pgpass to a password inside --db/DATABASE_URL.\n"
                 "--help-markdown prints this table as Markdown (the README's settings table).\n");
}

void settings_print_markdown(FILE *out)
{
    fprintf(out, "| flag | environment | default | meaning |\n|---|---|---|---|\n");
    for (size_t i = 0; i < NDEFS; i++)
        fprintf(out, "| `--%s` | `%s` | %s | %s |\n", defs[i].flag, defs[i].env,
                defs[i].def ? defs[i].def : "(unset)", defs[i].help);
}

static const struct setting_def *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < NDEFS; i++)
        if (strlen(defs[i].flag) == len && strncmp(defs[i].flag, name, len) == 0)
            return &defs[i];
    return NULL;
}

static int parse_command(struct settings *s, int argc, char **argv, int *first, FILE *err)
{
    *first = 1;
    s->command = CMD_SERVE;
    if (argc > 1 && argv[1][0] != '-') {
        if (strcmp(argv[1], "serve") == 0)
            s->command = CMD_SERVE;
        else if (strcmp(argv[1], "migrate") == 0)
            s->command = CMD_MIGRATE;
        else {
            /* not echoed: a stray argument may be part of a connection string */
            fprintf(err, "integration_cache: unknown command (expected serve or migrate)\n");
            return -1;
        }
        *first = 2;
    }
    return 0;
}

/* Collects the command line into flag_values[] (one slot per setting). Returns 0, 1 after
 * printing help, or -1 after an error message. */
static int parse_flags(int argc, char **argv, int first, const char **flag_values, FILE *out,
                       FILE *err)
{
    for (int i = first; i < argc; i++) { /* help wins over everything, even bad values */
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_help(out);
            return 1;
        }
        if (strcmp(argv[i], "--help-markdown") == 0) {
            settings_print_markdown(out);
            return 1;
        }
    }
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            fprintf(err, "integration_cache: unexpected argument #%d (see --help)\n", i);
            return -1;
        }
        const char *eq = strchr(a + 2, '=');
        size_t nlen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        const struct setting_def *d = find_flag(a + 2, nlen);
        if (!d) {
            fprintf(err, "integration_cache: unknown option '%.*s' (see --help)\n",
                    (int)(nlen > 40 ? 40 : nlen) + 2, a);
            return -1;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) {
            fprintf(err, "integration_cache: --%s (%s) needs a value\n", d->flag, d->env);
            return -1;
        }
        flag_values[d - defs] = v;
    }
    return 0;
}

int settings_load(struct settings *s, int argc, char **argv, const char *(*get_env)(const char *),
                  FILE *out, FILE *err)
{
    memset(s, 0, sizeof *s);
    int first;
    if (parse_command(s, argc, argv, &first, err))
        return -1;
    const char *flag_values[NDEFS] = {0};
    int r = parse_flags(argc, argv, first, flag_values, out, err);
    if (r)
        return r;
    for (size_t i = 0; i < NDEFS; i++) { /* flag, else environment, else default */
        const char *env = get_env(defs[i].env);
        const char *v = flag_values[i] ? flag_values[i] : env;
        if (defs[i].def && apply(s, &defs[i], defs[i].def) != 0)
            return -1; /* a broken table is a programming error caught by the unit tests */
        if (v && apply(s, &defs[i], v) != 0) {
            report_bad(err, &defs[i], v, flag_values[i] ? "command line" : "environment");
            return -1;
        }
    }
    if (s->threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        s->threads = n > 0 ? (int)n : 1;
    }
    if (s->retry_max < s->retry_min) {
        fprintf(err, "integration_cache: --retry-max (IC_RETRY_MAX) is below --retry-min "
                     "(IC_RETRY_MIN)\n");
        return -1;
    }
    if (s->reconnect_max < s->reconnect_min) {
        fprintf(err, "integration_cache: --reconnect-max (IC_RECONNECT_MAX) is below "
                     "--reconnect-min (IC_RECONNECT_MIN)\n");
        return -1;
    }
    return 0;
}

void settings_deinit(struct settings *s)
{
    for (size_t i = 0; i < NDEFS; i++) {
        enum setting_type t = defs[i].type;
        if (t == T_STRING || t == T_URL) {
            char **field = (char **)((char *)s + defs[i].offset);
            free(*field);
            *field = NULL;
        }
    }
}
