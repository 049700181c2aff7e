/*
 * Clocks and time formatting. Deadlines and ages use the monotonic clock; the epoch numbers and
 * ISO strings clients see use the real-time clock. ISO strings are local time (as TZ says) without
 * a zone, with microseconds: 2025-09-06T11:43:46.198319, as SPEC §3 shows.
 */
#pragma once
#include <stddef.h>

/* Seconds, with nanosecond resolution. */
double time_mono_now(void);
double time_real_now(void);

/* Writes the ISO local-time form of `epoch` (26 characters) and returns its length; the output is
 * always NUL-terminated; `size` must be at least 27. Thread-safe. */
size_t time_format_iso(double epoch, char *out, size_t size);

/* Writes seconds with three decimals ("7.360", "-0.001"), as printf's "%.3f" would for values of
 * magnitude below 1e15, without printf's floating-point machinery: it runs on every cache hit.
 * Returns the length; `out` needs 24 bytes. */
size_t time_format_seconds(double seconds, char *out);
