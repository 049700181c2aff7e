/*
 * Locates the members of a top-level JSON object in its text, so cached bodies can carry each
 * integration's configuration byte for byte as PostgreSQL stored it (no re-serialisation: large
 * integers and number formats survive untouched). The text must already have been validated by a
 * strict parser (jansson): this scanner only finds boundaries, it does not judge the grammar, but
 * it never reads outside [text, text + len) whatever the input.
 */
#pragma once
#include <stddef.h>

struct json_span {
    size_t key_off, key_len;     /* the key's raw text without its quotes (escapes kept) */
    size_t value_off, value_len; /* the member's value, exactly as written */
};

/* Fills up to `max` spans in document order; returns the number of members, or -1 when the text
 * is not an object or ends early. A return value > max means only the first max were stored. */
int json_object_spans(const char *text, size_t len, struct json_span *spans, int max);
