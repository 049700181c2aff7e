/* Boundary scanner for the members of a validated JSON object (see json_spans.h). */
#include "cache/json_spans.h"

#include <stdbool.h>

static size_t skip_ws(const char *t, size_t i, size_t len)
{
    while (i < len && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r'))
        i++;
    return i;
}

/* t[i] is the opening quote; returns the index just past the closing quote, or len. */
static size_t skip_string(const char *t, size_t i, size_t len)
{
    for (i++; i < len; i++) {
        if (t[i] == '\\')
            i++;
        else if (t[i] == '"')
            return i + 1;
    }
    return len;
}

/* Returns the index just past the value starting at t[i], or len when it runs off the end. */
static size_t skip_value(const char *t, size_t i, size_t len)
{
    if (i >= len)
        return len;
    if (t[i] == '"')
        return skip_string(t, i, len);
    if (t[i] == '{' || t[i] == '[') {
        size_t depth = 0;
        while (i < len) {
            char c = t[i];
            if (c == '"') {
                i = skip_string(t, i, len);
                continue;
            }
            if (c == '{' || c == '[')
                depth++;
            else if (c == '}' || c == ']') {
                if (--depth == 0)
                    return i + 1;
            }
            i++;
        }
        return len;
    }
    while (i < len && t[i] != ',' && t[i] != '}' && t[i] != ']' && t[i] != ' ' && t[i] != '\n' &&
           t[i] != '\t' && t[i] != '\r')
        i++;
    return i;
}

int json_object_spans(const char *t, size_t len, struct json_span *spans, int max)
{
    size_t i = skip_ws(t, 0, len);
    if (i >= len || t[i] != '{')
        return -1;
    i = skip_ws(t, i + 1, len);
    if (i < len && t[i] == '}')
        return 0;
    int n = 0;
    while (i < len) {
        if (t[i] != '"')
            return -1;
        size_t key_end = skip_string(t, i, len);
        if (key_end >= len)
            return -1;
        struct json_span s = {.key_off = i + 1, .key_len = key_end - i - 2};
        i = skip_ws(t, key_end, len);
        if (i >= len || t[i] != ':')
            return -1;
        i = skip_ws(t, i + 1, len);
        s.value_off = i;
        i = skip_value(t, i, len);
        if (i >= len)
            return -1;
        s.value_len = i - s.value_off;
        if (n < max)
            spans[n] = s;
        n++;
        i = skip_ws(t, i, len);
        if (i < len && t[i] == '}')
            return n;
        if (i >= len || t[i] != ',')
            return -1;
        i = skip_ws(t, i + 1, len);
    }
    return -1;
}
