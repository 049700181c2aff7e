/* Clock reads and ISO formatting (see timeutil.h). */
#include "util/timeutil.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>

static double clock_seconds(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double time_mono_now(void)
{
    return clock_seconds(CLOCK_MONOTONIC);
}

double time_real_now(void)
{
    return clock_seconds(CLOCK_REALTIME);
}

size_t time_format_iso(double epoch, char *out, size_t size)
{
    double whole = floor(epoch);
    time_t secs = (time_t)whole;
    long usec = lround((epoch - whole) * 1e6);
    if (usec >= 1000000) {
        secs += 1;
        usec -= 1000000;
    }
    struct tm tm;
    localtime_r(&secs, &tm);
    int n = snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%06ld", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
    if (n < 0)
        n = 0;
    return (size_t)n < size ? (size_t)n : size - 1;
}

size_t time_format_seconds(double seconds, char *out)
{
    char digits[24];
    size_t n = 0, len = 0;
    bool negative = seconds < 0;
    long long ms = llround((negative ? -seconds : seconds) * 1000.0);
    if (negative && ms != 0)
        out[len++] = '-';
    do { /* least significant first; at least "0.000" */
        digits[n++] = (char)('0' + ms % 10);
        ms /= 10;
    } while (ms > 0 || n < 4);
    while (n > 3)
        out[len++] = digits[--n];
    out[len++] = '.';
    while (n > 0)
        out[len++] = digits[--n];
    out[len] = '\0';
    return len;
}
