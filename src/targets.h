/*
 * The integration services call events are dispatched to (SPEC §6.1), in the order responses
 * list them. A table index is a target's id everywhere (bit masks, per-target state, stats).
 */
#pragma once

enum target_id { TARGET_RETAILCRM, TARGET_UON, TARGET_MS, TARGET_COUNT };

static const char *const target_names[TARGET_COUNT] = {"retailcrm", "uon", "ms"};
