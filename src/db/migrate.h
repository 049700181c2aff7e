/*
 * `integration_cache migrate`: applies src/db/sql/migrate.sql in one transaction and exits. A
 * blocking libpq connection is fine here: this is a one-shot command, not the service.
 */
#pragma once
#include "settings.h"

/* Returns the process exit status: 0 applied (or already in place), 1 failed (logged). */
int migrate_run(const struct settings *s);
