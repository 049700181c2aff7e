/*
 * Phone numbers as SPEC §6.1 treats them: normalisation to +digits, internal numbers (2–5 digits),
 * and the §6.4 incoming transform rule ("+375{9}": keep the last 9 digits, put +375 in front).
 * Pure functions, unit-tested alone.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define PHONE_MAX 64

/* A leading + is kept, an all-digit number gets one, anything else is copied unchanged
 * (truncated to size - 1). */
void phone_normalize(const char *in, char *out, size_t size);
/* 2 to 5 digits, nothing else. */
bool phone_is_internal(const char *s);
/* Non-empty, not internal, and has at least one digit. */
bool phone_is_external(const char *s);
/* Applies `rule` to `number` into out; returns false (out untouched) when the rule is malformed
 * or the number has fewer digits than the rule keeps. */
bool phone_transform(const char *rule, const char *number, char *out, size_t size);
