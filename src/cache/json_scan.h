/*
 * A strict, allocation-free JSON validator and member locator, for the full-refresh path: it
 * checks a whole document against RFC 8259 (structure, strings and their escapes, UTF-8, number
 * grammar, depth) in one pass and reports where each member of the top-level object lies in the
 * text, so entries are built from slices of PostgreSQL's own bytes. Numbers are checked for
 * grammar only, never converted, so any number PostgreSQL's jsonb accepts passes unchanged.
 * Pure functions over (pointer, length); they never read outside the given text.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define JSON_SCAN_MAX_DEPTH 256

enum json_kind { JK_OBJECT, JK_ARRAY, JK_STRING, JK_NUMBER, JK_TRUE, JK_FALSE, JK_NULL };

struct json_member {
    size_t key_off, key_len;     /* the key without its quotes, escapes kept */
    size_t value_off, value_len; /* the value exactly as written */
    enum json_kind kind;
};

enum { JSON_SCAN_INVALID = -1, JSON_SCAN_NOT_OBJECT = -2, JSON_SCAN_DUPLICATE = -3 };

/* Validates the whole text and fills up to `max` members of its top-level object. Returns the
 * member count (possibly > max: only max were stored), JSON_SCAN_INVALID, JSON_SCAN_NOT_OBJECT
 * (valid JSON of another kind) or JSON_SCAN_DUPLICATE (a top-level key twice). */
int json_scan_object(const char *text, size_t len, struct json_member *members, int max);

/* In an object already validated (obj[0..len) is "{...}"), finds the member whose key decodes to
 * `name`. */
bool json_find_member(const char *obj, size_t len, const char *name, struct json_member *out);

/* Decodes a string value (with its quotes) or a key (without) into out; false when it does not
 * fit in size - 1 bytes or decodes to a NUL. */
bool json_decode_string(const char *s, size_t len, bool quoted, char *out, size_t size);
