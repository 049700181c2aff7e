/*
 * Path parameters of SPEC §3: an enterprise number, an integration type or a phone, percent-decoded
 * and checked against its character set and length (1–32). A pure function over (pointer, length),
 * so it is unit-tested and fuzzable alone.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define PARAM_MAX_LEN 32

enum param_kind { PARAM_ENTERPRISE, PARAM_TYPE, PARAM_PHONE };

/* Decodes raw[0..len) into out (PARAM_MAX_LEN + 1 bytes, NUL-terminated) and validates it.
 * Returns 0, or -1 when an escape is undecodable or the decoded value is outside its set. */
int param_parse(enum param_kind kind, const char *raw, size_t len, char *out);

/* The 400 detail for a kind: "invalid enterprise_number", "invalid integration_type", ... */
const char *param_error(enum param_kind kind);

/* True when s[0..len) is a valid, already decoded value of that kind. */
bool param_valid(enum param_kind kind, const char *s, size_t len);
