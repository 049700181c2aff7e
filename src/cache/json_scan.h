/*
 * A strict, allocation-free JSON validator and member locator, for the full-refresh path: it
 * checks a whole document against RFC 8259 (structure, strings and their escapes, UTF-8, number
 * grammar, depth) in one pass and reports where each member of the top-level object lies in the
 * text, and where chosen members one level down lie (an integration's "enabled", say), so entries
 * are built from slices of PostgreSQL's own bytes without a second pass. Numbers are checked for
 * grammar only, never converted, so any number PostgreSQL's jsonb accepts passes unchanged.
 * Pure functions over (pointer, length); they never read outside the given text.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define JSON_SCAN_MAX_DEPTH 256

enum json_kind { JK_OBJECT, JK_ARRAY, JK_STRING, JK_NUMBER, JK_TRUE, JK_FALSE, JK_NULL };

#define JSON_SCAN_MAX_INNER 2

/* Where a value lies in the text; len 0 when there is none (no JSON value is empty). */
struct json_slice {
    size_t off, len;
};

struct json_member {
    size_t key_off, key_len;     /* the key without its quotes, escapes kept */
    size_t value_off, value_len; /* the value exactly as written */
    enum json_kind kind;
    /* When the value is an object: the values of its members whose keys decode to the scan's
     * inner names, in the order of those names (the last one wins when a key repeats). */
    struct json_slice inner[JSON_SCAN_MAX_INNER];
};

enum { JSON_SCAN_INVALID = -1, JSON_SCAN_NOT_OBJECT = -2, JSON_SCAN_DUPLICATE = -3 };

/* Validates the whole text and fills up to `max` members of its top-level object, with their
 * `inner` slices for the names in `inner` (NULL-terminated, at most JSON_SCAN_MAX_INNER names of
 * ASCII; NULL for none). Returns the member count (possibly > max: only max were stored),
 * JSON_SCAN_INVALID, JSON_SCAN_NOT_OBJECT (valid JSON of another kind) or JSON_SCAN_DUPLICATE (a
 * top-level key twice). */
int json_scan_object(const char *text, size_t len, const char *const *inner,
                     struct json_member *members, int max);

/* Decodes a string value (with its quotes) or a key (without) into out; false when it does not
 * fit in size - 1 bytes or decodes to a NUL. */
bool json_decode_string(const char *s, size_t len, bool quoted, char *out, size_t size);
