/*
 * Every setting of the service in one table: flag, IC_* environment variable, default, bounds and
 * help text. `--help`, start-up validation and the README's settings table all come from that
 * table (settings.c), so adding a setting is one line there plus its field here.
 * Precedence: command-line flag, then environment variable, then default.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>

enum settings_command { CMD_SERVE, CMD_MIGRATE };

struct settings {
    enum settings_command command;
    /* where to listen (SPEC default 127.0.0.1:8020) */
    char listen[64];
    struct sockaddr_storage listen_addr;
    /* libpq connection string; NULL means "use PG* variables". Never printed or logged. */
    char *db;
    int threads;     /* HTTP worker threads; 0 in the table means "number of cores" */
    int db_prepared; /* 1: pg_query.prepare is honoured (off behind old transaction poolers) */
    double ttl, negative_ttl;
    double refresh_interval, refresh_jitter, cleanup_interval;
    double heartbeat_interval, heartbeat_timeout;
    double reconnect_min, reconnect_max, db_timeout;
    double idle_timeout, head_timeout;
    long max_head, max_body, max_connections, max_config_bytes;
    char *log_file;
    int log_level;
    char *retailcrm_url, *uon_url, *ms_url;
    /* dispatch (SPEC §6) */
    double delivery_timeout, retry_min, retry_max, retry_horizon, dispatch_poll;
    double breaker_cooldown, outbox_retention;
    long delivery_concurrency, breaker_failures, dedup_capacity, intake_connections;
    char *spool_dir;
    char *instance; /* outbox lock owner; NULL: <hostname>:<listen> */
    /* customer look-ups (SPEC §7) */
    double lookup_ttl, lookup_timeout;
};

/* Parses argv and the environment (through `get_env`, normally getenv) into `s`.
 * Returns 0 when the service should run, 1 when --help was printed to `out`, and -1 after writing a
 * message naming the offending setting to `err`. Allocated members are freed by settings_deinit. */
int settings_load(struct settings *s, int argc, char **argv, const char *(*get_env)(const char *),
                  FILE *out, FILE *err);
void settings_deinit(struct settings *s);

/* Writes the settings table as Markdown (for the README). */
void settings_print_markdown(FILE *out);
