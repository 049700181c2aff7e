/* Phone number rules (see phone.h). */
#include "util/phone.h"

#include <stdio.h>
#include <string.h>

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

void phone_normalize(const char *in, char *out, size_t size)
{
    if (all_digits(in))
        snprintf(out, size, "+%s", in);
    else
        snprintf(out, size, "%s", in);
}

bool phone_is_internal(const char *s)
{
    size_t n = strlen(s);
    return n >= 2 && n <= 5 && all_digits(s);
}

bool phone_is_external(const char *s)
{
    return *s && !phone_is_internal(s) && strpbrk(s, "0123456789") != NULL;
}

bool phone_transform(const char *rule, const char *number, char *out, size_t size)
{
    const char *open = strchr(rule, '{'), *close = open ? strchr(open, '}') : NULL;
    if (!open || !close || close[1] != '\0' || close == open + 1 || close - open > 3)
        return false;
    unsigned keep = 0;
    for (const char *p = open + 1; p < close; p++) {
        if (*p < '0' || *p > '9')
            return false;
        keep = keep * 10 + (unsigned)(*p - '0');
    }
    char digits[PHONE_MAX];
    size_t n = 0;
    for (const char *p = number; *p && n < sizeof digits - 1; p++)
        if (*p >= '0' && *p <= '9')
            digits[n++] = *p;
    digits[n] = '\0';
    if (keep == 0 || n < keep)
        return false;
    int w = snprintf(out, size, "%.*s%s", (int)(open - rule), rule, digits + n - keep);
    return w > 0 && (size_t)w < size;
}
