/* The migrate subcommand (see migrate.h). */
#include "db/migrate.h"

#include <libpq-fe.h>
#include <string.h>

#include "db/pgconn.h"
#include "sql_embedded.h"
#include "util/log.h"

static void log_pg_error(const char *what, const char *msg)
{
    char line[512];
    snprintf(line, sizeof line, "%s", msg ? msg : "");
    line[strcspn(line, "\n")] = '\0';
    log_error("migrate: %s: %s", what, line);
}

int migrate_run(const struct settings *s)
{
    const char *keys[] = {"application_name", "dbname", NULL};
    const char *vals[] = {"integration_cache migrate", s->db, NULL};
    if (!s->db)
        keys[1] = NULL;
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(pg) != CONNECTION_OK) {
        log_pg_error("cannot connect to the database", PQerrorMessage(pg));
        PQfinish(pg);
        return 1;
    }
    PQsetNoticeProcessor(pg, pg_notice_to_log, (void *)"migrate");
    PGresult *res = PQexec(pg, SQL_MIGRATE);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_pg_error("applying migrations failed", PQresultErrorMessage(res));
        rc = 1;
    } else {
        log_info("migrate: notification trigger on enterprises is in place");
    }
    PQclear(res);
    PQfinish(pg);
    return rc;
}
