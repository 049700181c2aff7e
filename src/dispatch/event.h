/*
 * Call events (SPEC §6): the intake payload's validation, and what each target receives (§6.1).
 * Pure functions over jansson values: no I/O, no globals, unit-tested alone.
 */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "targets.h"

#define EVENT_MAX_ID 128 /* uniqueId and token, bytes */

/* A validated intake request. `root` owns everything; the pointers borrow from it. */
struct call_event {
    json_t *root;
    const char *token;
    const char *unique_id;
    const char *event_type; /* "dial" or "hangup" */
    json_t *raw;            /* an object (an empty one when the request had none) */
    const char *record_url; /* NULL when absent */
    const char *origin;     /* NULL when absent */
};

/* 0, or -1 for "invalid payload": not a JSON object, token or uniqueId missing or not a
 * non-empty string of at most EVENT_MAX_ID bytes, event_type not dial/hangup, raw present but not
 * an object, record_url/origin present but not strings. */
int call_event_parse(const char *body, size_t len, struct call_event *ev);
void call_event_free(struct call_event *ev);

/* The outbox payload of an accepted event as compact JSON text: the request's members plus the
 * enterprise's name2 (NULL or "" when it has none: null). The caller frees it; NULL only when
 * memory ran out. */
char *call_event_payload_json(const struct call_event *ev, const char *name2);

/* Where a delivery goes and what it carries. */
struct delivery_body {
    const char *path; /* NULL: nothing to send for this target (e.g. ms dial of a download) */
    char *json;       /* malloc'd request body */
};

/* Renders `payload` (call_event_payload_json's shape, parsed) for `target`. `synthetic_dial` asks
 * for the retailcrm dial sent before a hangup whose dial was never delivered. `transform` is a §6.4
 * rule for the call's line, or NULL. Returns 0, or -1 when the payload is malformed. */
int delivery_render(enum target_id target, const char *enterprise_number, json_t *payload,
                    bool synthetic_dial, const char *transform, struct delivery_body *out);

/* §6.1 direction and phone of a raw event: direction "in"/"out"; phone normalised. */
struct call_parties {
    const char *direction;
    char phone[64];
    char extension[64]; /* the first internal number among CallerIDNum, Extensions,
                           ConnectedLineNum; "" when none */
};
void call_parties_of(const json_t *raw, struct call_parties *out);

/* EndTime - StartTime in seconds (>= 0; 0 when either is missing or malformed). */
long call_duration(const json_t *raw);
