/* Log-safe copies of untrusted text (see logsafe.h): no line breaks or escapes reach the log. */
#include "util/logsafe.h"

const char *log_safe(const char *s, char *out, size_t size)
{
    size_t n = 0;
    for (; s && *s && n + 1 < size; s++)
        out[n++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    out[n] = '\0';
    return out;
}
