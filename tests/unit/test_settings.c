/*
 * Unit tests for src/settings: defaults, environment and flag precedence (--x v and --x=v),
 * commands, every numeric bound and the listen forms (errors name --flag and IC_VAR), --help
 * listing every variable, DATABASE_URL never echoed, and settings_deinit freeing what was loaded.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "settings.h"

#define SECRET "password=s3cr3t"
#define DB_URL "host=db.example user=ic " SECRET " dbname=platform"

/* --- an injected environment --- */

static const char *const *fake_env; /* name, value, name, value, ..., NULL */
static char asked[64][32];          /* every name settings_load asked for */
static int nasked;

static const char *get_env(const char *name)
{
    if (nasked < 64)
        snprintf(asked[nasked++], sizeof asked[0], "%s", name);
    for (const char *const *p = fake_env; p && *p; p += 2)
        if (strcmp(p[0], name) == 0)
            return p[1];
    return NULL;
}

struct run {
    int rc;
    char *out, *err;
    struct settings s;
};

/* Runs settings_load on argv (NULL-terminated, without argv[0]) and env; captures out and err. */
static void run(struct run *r, const char *const *args, const char *const *env)
{
    char *argv[32] = {"integration_cache"};
    int argc = 1;
    for (; args && args[argc - 1]; argc++)
        argv[argc] = (char *)args[argc - 1];
    argv[argc] = NULL;
    fake_env = env;
    nasked = 0;
    size_t olen, elen;
    FILE *out = open_memstream(&r->out, &olen);
    FILE *err = open_memstream(&r->err, &elen);
    assert_non_null(out);
    assert_non_null(err);
    r->rc = settings_load(&r->s, argc, argv, get_env, out, err);
    fclose(out);
    fclose(err);
}

static void done(struct run *r)
{
    settings_deinit(&r->s);
    free(r->out);
    free(r->err);
}

/* True when `word` occurs in s not followed by a character that would make it a longer name. */
static bool has_word(const char *s, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = strstr(s, word); p; p = strstr(p + 1, word)) {
        char next = p[n];
        if (!(isalnum((unsigned char)next) || next == '-' || next == '_'))
            return true;
    }
    return false;
}

static void expect_ok(struct run *r, const char *const *args, const char *const *env)
{
    run(r, args, env);
    if (r->rc != 0)
        fail_msg("settings_load returned %d: %s", r->rc, r->err);
    assert_string_equal(r->err, "");
}

/* Expects -1 and a message naming both the flag and the variable. */
static void expect_bad(const char *const *args, const char *const *env, const char *flag,
                       const char *var)
{
    struct run r;
    run(&r, args, env);
    if (r.rc != -1)
        fail_msg("accepted (rc %d): %s %s / %s=%s", r.rc, args && args[0] ? args[0] : "",
                 args && args[0] && args[1] ? args[1] : "", env && env[0] ? env[0] : "",
                 env && env[0] ? env[1] : "");
    if (!has_word(r.err, flag) || !has_word(r.err, var))
        fail_msg("message does not name %s and %s: %s", flag, var, r.err);
    assert_string_equal(r.out, "");
    done(&r);
}

static void test_defaults(void **state)
{
    (void)state;
    struct run r;
    expect_ok(&r, NULL, NULL);
    struct settings *s = &r.s;
    assert_int_equal(s->command, CMD_SERVE);
    assert_string_equal(s->listen, "127.0.0.1:8020");
    const struct sockaddr_in *in4 = (const struct sockaddr_in *)&s->listen_addr;
    assert_int_equal(in4->sin_family, AF_INET);
    assert_int_equal(ntohs(in4->sin_port), 8020);
    assert_int_equal(ntohl(in4->sin_addr.s_addr), INADDR_LOOPBACK);
    assert_true(s->ttl == 90);
    assert_true(s->refresh_interval == 240);
    assert_true(s->refresh_jitter == 60);
    assert_true(s->cleanup_interval == 30);
    assert_true(s->negative_ttl == 5);
    assert_true(s->reconnect_min <= s->reconnect_max);
    assert_int_equal(s->max_head, 8192);
    assert_int_equal(s->max_body, 1048576);
    assert_string_equal(s->retailcrm_url, "http://127.0.0.1:8019");
    assert_string_equal(s->uon_url, "http://127.0.0.1:8022");
    assert_string_equal(s->ms_url, "http://127.0.0.1:8023");
    assert_null(s->db);
    assert_null(s->log_file);
    assert_true(s->threads >= 1); /* 0 means one per core */
    assert_string_equal(r.out, "");
    done(&r);
}

static void test_env_overrides(void **state)
{
    (void)state;
    const char *env[] = {"IC_TTL",
                         "5",
                         "IC_LISTEN",
                         "0.0.0.0:9000",
                         "IC_REFRESH_INTERVAL",
                         "300",
                         "IC_REFRESH_JITTER",
                         "0",
                         "IC_CLEANUP_INTERVAL",
                         "1.5",
                         "IC_THREADS",
                         "4",
                         "IC_MAX_HEAD",
                         "16384",
                         "IC_RETAILCRM_URL",
                         "https://crm.example:8443/base",
                         "IC_UON_URL",
                         "http://10.0.0.2:8022",
                         "IC_MS_URL",
                         "http://10.0.0.3:8023",
                         "IC_LOG_FILE",
                         "logs/x.log",
                         "DATABASE_URL",
                         DB_URL,
                         NULL};
    struct run r;
    expect_ok(&r, NULL, env);
    assert_true(r.s.ttl == 5);
    assert_string_equal(r.s.listen, "0.0.0.0:9000");
    assert_int_equal(ntohs(((struct sockaddr_in *)&r.s.listen_addr)->sin_port), 9000);
    assert_true(r.s.refresh_interval == 300);
    assert_true(r.s.refresh_jitter == 0);
    assert_true(r.s.cleanup_interval == 1.5);
    assert_int_equal(r.s.threads, 4);
    assert_int_equal(r.s.max_head, 16384);
    assert_string_equal(r.s.retailcrm_url, "https://crm.example:8443/base");
    assert_string_equal(r.s.uon_url, "http://10.0.0.2:8022");
    assert_string_equal(r.s.ms_url, "http://10.0.0.3:8023");
    assert_string_equal(r.s.log_file, "logs/x.log");
    assert_string_equal(r.s.db, DB_URL);
    done(&r);
}

static void test_flag_overrides_env(void **state)
{
    (void)state;
    const char *env[] = {"IC_TTL",       "7",        "IC_LISTEN", "0.0.0.0:9000",
                         "DATABASE_URL", "host=env", NULL};
    struct run r;
    const char *a1[] = {"--ttl", "5", NULL};
    expect_ok(&r, a1, env);
    assert_true(r.s.ttl == 5);
    assert_string_equal(r.s.listen, "0.0.0.0:9000");
    assert_string_equal(r.s.db, "host=env");
    done(&r);

    const char *a2[] = {"--ttl=5", "--listen=127.0.0.2:81", "--db=host=flag", NULL};
    expect_ok(&r, a2, env);
    assert_true(r.s.ttl == 5);
    assert_string_equal(r.s.listen, "127.0.0.2:81");
    assert_string_equal(r.s.db, "host=flag"); /* only the first '=' separates the value */
    done(&r);

    /* the last occurrence of a flag wins */
    const char *a3[] = {"--ttl", "5", "--ttl=6.5", NULL};
    expect_ok(&r, a3, env);
    assert_true(r.s.ttl == 6.5);
    done(&r);
}

static void test_commands(void **state)
{
    (void)state;
    struct run r;
    const char *serve[] = {"serve", NULL};
    expect_ok(&r, serve, NULL);
    assert_int_equal(r.s.command, CMD_SERVE);
    done(&r);
    const char *migrate[] = {"migrate", "--ttl", "3", NULL};
    expect_ok(&r, migrate, NULL);
    assert_int_equal(r.s.command, CMD_MIGRATE);
    assert_true(r.s.ttl == 3);
    done(&r);
    const char *flag_first[] = {"--ttl", "3", NULL};
    expect_ok(&r, flag_first, NULL);
    assert_int_equal(r.s.command, CMD_SERVE);
    done(&r);

    const char *unknown[] = {"frobnicate", NULL};
    run(&r, unknown, NULL);
    assert_int_equal(r.rc, -1);
    assert_non_null(strstr(r.err, "unknown command"));
    assert_null(strstr(r.err, "frobnicate")); /* never echoed: it could be part of a conninfo */
    done(&r);
}

static void test_unknown_options(void **state)
{
    (void)state;
    const char *const cases[][3] = {
        {"--nope", NULL},           {"--nope=1", NULL}, {"serve", "extra", NULL}, {"-x", NULL},
        {"serve", "migrate", NULL}, {"--", NULL},       {"--TTL=5", NULL},        {"--tt=5", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct run r;
        run(&r, cases[i], NULL);
        if (r.rc != -1)
            fail_msg("case %zu (%s) accepted", i, cases[i][0]);
        assert_true(strlen(r.err) > 0);
        done(&r);
    }
    struct run r;
    const char *nope[] = {"--nope=1", NULL};
    run(&r, nope, NULL);
    assert_non_null(strstr(r.err, "--nope"));
    done(&r);

    /* a flag without its value */
    const char *missing[] = {"--ttl", NULL};
    expect_bad(missing, NULL, "--ttl", "IC_TTL");
}

struct bound {
    const char *flag, *var;
    const char *bad[6];
    const char *edges[2]; /* the inclusive minimum and maximum, which must be accepted */
    const char *extra;    /* another flag the edges need (reconnect-min <= reconnect-max) */
};

/* Every numeric setting: below min, above max, and (for whole numbers) a fraction. */
static const struct bound bounds[] = {
    {"threads", "IC_THREADS", {"-1", "257", "1.5"}, {"0", "256"}, NULL},
    {"ttl", "IC_TTL", {"0.04", "86401", "0"}, {"0.05", "86400"}, NULL},
    {"negative-ttl", "IC_NEGATIVE_TTL", {"-0.1", "3601"}, {"0", "3600"}, NULL},
    {"refresh-interval", "IC_REFRESH_INTERVAL", {"0.9", "86401", "0"}, {"1", "86400"}, NULL},
    {"refresh-jitter", "IC_REFRESH_JITTER", {"-1", "86401"}, {"0", "86400"}, NULL},
    {"cleanup-interval", "IC_CLEANUP_INTERVAL", {"0.04", "3601", "0"}, {"0.05", "3600"}, NULL},
    {"heartbeat-interval", "IC_HEARTBEAT_INTERVAL", {"0.04", "3601"}, {"0.05", "3600"}, NULL},
    {"heartbeat-timeout", "IC_HEARTBEAT_TIMEOUT", {"0.04", "3601"}, {"0.05", "3600"}, NULL},
    {"reconnect-min",
     "IC_RECONNECT_MIN",
     {"0.009", "3601"},
     {"0.01", "3600"},
     "--reconnect-max=3600"},
    {"reconnect-max",
     "IC_RECONNECT_MAX",
     {"0.009", "3601"},
     {"0.01", "3600"},
     "--reconnect-min=0.01"},
    {"db-timeout", "IC_DB_TIMEOUT", {"0.09", "601"}, {"0.1", "600"}, NULL},
    {"db-prepared", "IC_DB_PREPARED", {"-1", "2", "0.5"}, {"0", "1"}, NULL},
    {"idle-timeout", "IC_IDLE_TIMEOUT", {"0.9", "86401"}, {"1", "86400"}, NULL},
    {"head-timeout", "IC_HEAD_TIMEOUT", {"0.9", "3601"}, {"1", "3600"}, NULL},
    {"max-head", "IC_MAX_HEAD", {"1023", "1048577", "2048.5"}, {"1024", "1048576"}, NULL},
    {"max-body", "IC_MAX_BODY", {"1023", "67108865", "2048.5"}, {"1024", "67108864"}, NULL},
    {"max-connections", "IC_MAX_CONNECTIONS", {"15", "1000001", "100.5"}, {"16", "1000000"}, NULL},
    {"max-config-bytes",
     "IC_MAX_CONFIG_BYTES",
     {"1023", "67108865", "4096.25"},
     {"1024", "67108864"},
     NULL},
    {"delivery-timeout", "IC_DELIVERY_TIMEOUT", {"0.04", "601"}, {"0.05", "600"}, NULL},
    {"retry-min", "IC_RETRY_MIN", {"0.009", "86401"}, {"0.01", "300"}, NULL},
    {"retry-max", "IC_RETRY_MAX", {"0.009", "86401"}, {"1", "86400"}, NULL},
    {"retry-horizon", "IC_RETRY_HORIZON", {"0.9", "2592001"}, {"1", "2592000"}, NULL},
    {"dispatch-poll", "IC_DISPATCH_POLL", {"0.009", "61"}, {"0.01", "60"}, NULL},
    {"delivery-concurrency",
     "IC_DELIVERY_CONCURRENCY",
     {"0", "10001", "2.5"},
     {"1", "10000"},
     NULL},
    {"breaker-failures", "IC_BREAKER_FAILURES", {"0", "1001", "2.5"}, {"1", "1000"}, NULL},
    {"breaker-cooldown", "IC_BREAKER_COOLDOWN", {"0.04", "3601"}, {"0.05", "3600"}, NULL},
    {"intake-connections", "IC_INTAKE_CONNECTIONS", {"0", "9", "1.5"}, {"1", "8"}, NULL},
    {"dedup-capacity", "IC_DEDUP_CAPACITY", {"15", "100000001", "20.5"}, {"16", "100000000"}, NULL},
    {"outbox-retention", "IC_OUTBOX_RETENTION", {"299", "31536001"}, {"300", "31536000"}, NULL},
    {"lookup-ttl", "IC_LOOKUP_TTL", {"-1", "86401"}, {"0", "86400"}, NULL},
    {"lookup-timeout", "IC_LOOKUP_TIMEOUT", {"0.04", "61"}, {"0.05", "60"}, NULL},
};

/* Malformed for every numeric setting. */
static const char *const not_numbers[] = {"abc", "", "5x", "5 ", "0x", "nan", "inf", "1e999", "--"};

static void expect_bad_value(const struct bound *b, const char *value)
{
    char flag[64], eq[128];
    snprintf(flag, sizeof flag, "--%s", b->flag);
    snprintf(eq, sizeof eq, "--%s=%s", b->flag, value);
    const char *sep[] = {flag, value, NULL};
    const char *joined[] = {eq, NULL};
    const char *env[] = {b->var, value, NULL};
    expect_bad(sep, NULL, flag, b->var);
    expect_bad(joined, NULL, flag, b->var);
    expect_bad(NULL, env, flag, b->var);
}

static void test_numeric_bounds(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
        const struct bound *b = &bounds[i];
        for (size_t k = 0; k < 6 && b->bad[k]; k++)
            expect_bad_value(b, b->bad[k]);
        for (size_t k = 0; k < sizeof not_numbers / sizeof not_numbers[0]; k++)
            expect_bad_value(b, not_numbers[k]);
        for (size_t k = 0; k < 2; k++) {
            char eq[128];
            snprintf(eq, sizeof eq, "--%s=%s", b->flag, b->edges[k]);
            const char *args[] = {eq, b->extra, NULL};
            struct run r;
            run(&r, args, NULL);
            if (r.rc != 0)
                fail_msg("%s rejected: %s", eq, r.err);
            done(&r);
        }
    }
}

static void test_reconnect_order(void **state)
{
    (void)state;
    const char *args[] = {"--reconnect-min=10", "--reconnect-max=5", NULL};
    struct run r;
    run(&r, args, NULL);
    assert_int_equal(r.rc, -1);
    assert_true(has_word(r.err, "--reconnect-max") && has_word(r.err, "IC_RECONNECT_MAX"));
    done(&r);
}

static void test_other_bad_values(void **state)
{
    (void)state;
    const char *lvl[] = {"--log-level=loud", NULL};
    expect_bad(lvl, NULL, "--log-level", "IC_LOG_LEVEL");
    const char *lvl_env[] = {"IC_LOG_LEVEL", "verbose", NULL};
    expect_bad(NULL, lvl_env, "--log-level", "IC_LOG_LEVEL");
    const char *url[] = {"--ms-url", "ftp://x", NULL};
    expect_bad(url, NULL, "--ms-url", "IC_MS_URL");
    const char *url_env[] = {"IC_UON_URL", "127.0.0.1:8022", NULL};
    expect_bad(NULL, url_env, "--uon-url", "IC_UON_URL");
    const char *url2[] = {"--retailcrm-url=", NULL};
    expect_bad(url2, NULL, "--retailcrm-url", "IC_RETAILCRM_URL");

    struct run r;
    const char *ok[] = {"--log-level", "debug", NULL};
    expect_ok(&r, ok, NULL);
    done(&r);
}

static void test_listen_forms(void **state)
{
    (void)state;
    const char *bad[] = {"8020",          "host:",     "1.2.3.4:70000", "[::1]8020",
                         ":8020",         "1.2.3.4:0", "1.2.3.4:-1",    "1.2.3.4:80x",
                         "[::1",          "[::1]:",    "999.1.1.1:80",  "",
                         "[1.2.3.4]:80x", "[zz]:8020", "1.2.3.4:65536"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[] = {"--listen", bad[i], NULL};
        expect_bad(args, NULL, "--listen", "IC_LISTEN");
        const char *env[] = {"IC_LISTEN", bad[i], NULL};
        expect_bad(NULL, env, "--listen", "IC_LISTEN");
    }

    struct run r;
    const char *v6[] = {"--listen=[::1]:8020", NULL};
    expect_ok(&r, v6, NULL);
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&r.s.listen_addr;
    assert_int_equal(in6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(in6->sin6_port), 8020);
    assert_memory_equal(&in6->sin6_addr, &in6addr_loopback, sizeof in6addr_loopback);
    assert_string_equal(r.s.listen, "[::1]:8020");
    done(&r);

    const char *lh[] = {"--listen", "localhost:8020", NULL};
    expect_ok(&r, lh, NULL);
    const struct sockaddr_in *in4 = (const struct sockaddr_in *)&r.s.listen_addr;
    assert_int_equal(in4->sin_family, AF_INET);
    assert_int_equal(ntohs(in4->sin_port), 8020);
    assert_int_equal(ntohl(in4->sin_addr.s_addr), INADDR_LOOPBACK);
    done(&r);

    const char *any[] = {"--listen=0.0.0.0:65535", NULL};
    expect_ok(&r, any, NULL);
    assert_int_equal(ntohs(((struct sockaddr_in *)&r.s.listen_addr)->sin_port), 65535);
    assert_int_equal(((struct sockaddr_in *)&r.s.listen_addr)->sin_addr.s_addr, INADDR_ANY);
    done(&r);
}

/* One row of the settings table, taken from its Markdown rendering:
 * "| `--flag` | `VAR` | default | meaning |". */
struct row {
    char flag[40], var[32], def[64];
};

static void cell(char *dst, size_t size, const char *start, const char *end)
{
    while (start < end && (*start == ' ' || *start == '`'))
        start++;
    while (end > start && (end[-1] == ' ' || end[-1] == '`'))
        end--;
    assert_true((size_t)(end - start) < size);
    snprintf(dst, size, "%.*s", (int)(end - start), start);
}

static int table_rows(struct row *rows, int max)
{
    char *md = NULL;
    size_t len;
    FILE *f = open_memstream(&md, &len);
    settings_print_markdown(f);
    fclose(f);
    int n = 0;
    for (char *line = md; line && *line && n < max;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, "| `--", 5) != 0)
            continue;
        char *c1 = line + 1, *c2 = strchr(c1, '|'), *c3 = c2 ? strchr(c2 + 1, '|') : NULL;
        char *c4 = c3 ? strchr(c3 + 1, '|') : NULL;
        assert_non_null(c4);
        cell(rows[n].flag, sizeof rows[n].flag, c1, c2);
        cell(rows[n].var, sizeof rows[n].var, c2 + 1, c3);
        cell(rows[n].def, sizeof rows[n].def, c3 + 1, c4);
        n++;
    }
    free(md);
    return n;
}

static void test_help(void **state)
{
    (void)state;
    static const char *const spec_vars[] = {
        "IC_LISTEN",           "IC_TTL",           "IC_REFRESH_INTERVAL", "IC_REFRESH_JITTER",
        "IC_CLEANUP_INTERVAL", "IC_RETAILCRM_URL", "IC_UON_URL",          "IC_MS_URL",
        "IC_LOG_FILE",         "IC_THREADS",       "DATABASE_URL"};
    struct run r;
    const char *args[] = {"--help", NULL};
    run(&r, args, NULL);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "");
    for (size_t i = 0; i < sizeof spec_vars / sizeof spec_vars[0]; i++)
        if (!has_word(r.out, spec_vars[i]))
            fail_msg("--help does not list %s", spec_vars[i]);
    struct row rows[64];
    int n = table_rows(rows, 64);
    assert_true(n >= 20);
    /* --help answers before reading the environment; a plain run must read every variable */
    struct run plain;
    const char *none[] = {NULL};
    expect_ok(&plain, none, NULL);
    for (int i = 0; i < n; i++) {
        const char *var = rows[i].var;
        if (!has_word(r.out, var))
            fail_msg("--help does not list %s", var);
        bool read = false; /* and every one of them is actually read from the environment */
        for (int k = 0; k < nasked; k++)
            read |= strcmp(asked[k], var) == 0;
        if (!read)
            fail_msg("%s is never read from the environment", var);
    }
    assert_true(has_word(r.out, "--ttl") && has_word(r.out, "--listen"));
    done(&plain);
    done(&r);

    const char *h[] = {"migrate", "-h", NULL};
    run(&r, h, NULL);
    assert_int_equal(r.rc, 1);
    assert_true(has_word(r.out, "IC_TTL"));
    done(&r);
}

/* Every setting whose default is a number has a row in bounds[], so a new numeric setting gets
 * its bounds tested (or this fails and says which one is missing). */
static void test_bounds_cover_table(void **state)
{
    (void)state;
    struct row rows[64];
    int n = table_rows(rows, 64);
    int numeric = 0;
    for (int i = 0; i < n; i++) {
        char *end;
        strtod(rows[i].def, &end);
        if (end == rows[i].def || *end)
            continue;
        numeric++;
        bool found = false;
        for (size_t k = 0; k < sizeof bounds / sizeof bounds[0]; k++)
            found |= strcmp(rows[i].flag + 2, bounds[k].flag) == 0 &&
                     strcmp(rows[i].var, bounds[k].var) == 0;
        if (!found)
            fail_msg("%s (%s) has no bounds test", rows[i].flag, rows[i].var);
    }
    assert_int_equal(numeric, sizeof bounds / sizeof bounds[0]);
}

static void test_db_url_never_echoed(void **state)
{
    (void)state;
    const char *env[] = {"DATABASE_URL", DB_URL, NULL};
    struct run r;
    const char *help[] = {"--help", NULL};
    run(&r, help, env);
    assert_int_equal(r.rc, 1);
    assert_null(strstr(r.out, "s3cr3t"));
    assert_null(strstr(r.err, "s3cr3t"));
    done(&r);

    const char *help_flag[] = {"--db", DB_URL, "--help", NULL};
    run(&r, help_flag, NULL);
    assert_int_equal(r.rc, 1);
    assert_null(strstr(r.out, "s3cr3t"));
    done(&r);

    /* another bad setting, from the environment and from the command line */
    const char *bad_env[] = {"DATABASE_URL", DB_URL, "IC_TTL", "abc", NULL};
    run(&r, NULL, bad_env);
    assert_int_equal(r.rc, -1);
    assert_true(has_word(r.err, "IC_TTL"));
    assert_null(strstr(r.err, "s3cr3t"));
    assert_null(strstr(r.out, "s3cr3t"));
    done(&r);

    const char *bad_flags[] = {"--db=" DB_URL, "--listen", "nowhere", "--ttl", "0", NULL};
    run(&r, bad_flags, env);
    assert_int_equal(r.rc, -1);
    assert_true(has_word(r.err, "--listen"));
    assert_null(strstr(r.err, "s3cr3t"));
    done(&r);

    const char *bad_after[] = {"--db", DB_URL, "--nope", NULL};
    run(&r, bad_after, NULL);
    assert_int_equal(r.rc, -1);
    assert_null(strstr(r.err, "s3cr3t"));
    done(&r);

    /* the flag itself given without a value: the message names it but has no value to echo */
    const char *db_missing[] = {"--db", NULL};
    run(&r, db_missing, env);
    assert_int_equal(r.rc, -1);
    assert_true(has_word(r.err, "--db") && has_word(r.err, "DATABASE_URL"));
    assert_null(strstr(r.err, "s3cr3t"));
    done(&r);

    /* --help-markdown prints the table, which documents the variable, never a value */
    const char *md_flag[] = {"--help-markdown", NULL};
    run(&r, md_flag, env);
    assert_int_equal(r.rc, 1);
    assert_true(strncmp(r.out, "| flag |", 8) == 0);
    assert_true(has_word(r.out, "DATABASE_URL") && has_word(r.out, "IC_TTL"));
    assert_null(strstr(r.out, "s3cr3t"));
    done(&r);

    /* the Markdown table documents the variable, never a value */
    char *md = NULL;
    size_t len;
    FILE *f = open_memstream(&md, &len);
    settings_print_markdown(f);
    fclose(f);
    assert_non_null(strstr(md, "DATABASE_URL"));
    assert_null(strstr(md, "s3cr3t"));
    free(md);
}

static void test_deinit(void **state)
{
    (void)state;
    const char *env[] = {"DATABASE_URL", DB_URL,       "IC_LOG_FILE", "x.log",
                         "IC_MS_URL",    "http://h:1", NULL};
    struct run r;
    expect_ok(&r, NULL, env);
    assert_non_null(r.s.db);
    settings_deinit(&r.s);
    assert_null(r.s.db);
    assert_null(r.s.log_file);
    assert_null(r.s.retailcrm_url);
    assert_null(r.s.uon_url);
    assert_null(r.s.ms_url);
    done(&r); /* a second deinit is harmless */

    /* what was allocated before an error is freed too (ASan reports a leak otherwise) */
    const char *args[] = {"--db=x", "--log-file=y", "--ttl=oops", NULL};
    run(&r, args, env);
    assert_int_equal(r.rc, -1);
    done(&r);

    /* an empty DATABASE_URL means "use the PG* variables" */
    const char *empty[] = {"DATABASE_URL", "", NULL};
    expect_ok(&r, NULL, empty);
    assert_null(r.s.db);
    done(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_env_overrides),
        cmocka_unit_test(test_flag_overrides_env),
        cmocka_unit_test(test_commands),
        cmocka_unit_test(test_unknown_options),
        cmocka_unit_test(test_numeric_bounds),
        cmocka_unit_test(test_bounds_cover_table),
        cmocka_unit_test(test_reconnect_order),
        cmocka_unit_test(test_other_bad_values),
        cmocka_unit_test(test_listen_forms),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_db_url_never_echoed),
        cmocka_unit_test(test_deinit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
