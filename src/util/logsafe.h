/* Network-supplied text headed for a log line: printable ASCII kept, anything else '?'. */
#pragma once
#include <stddef.h>

/* Copies at most size - 1 bytes of s into out, replacing control and non-ASCII bytes. */
const char *log_safe(const char *s, char *out, size_t size);
