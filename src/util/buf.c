/* Bounded growable buffer (see buf.h). Growth doubles; failures leave the content untouched. */
#include "util/buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/xalloc.h"

void buf_init(struct buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void buf_init_fixed(struct buf *b, char *storage, size_t size)
{
    b->data = storage;
    b->data[0] = '\0';
    b->len = 0;
    b->cap = size;
    b->max = size - 1; /* buf_reserve never needs more than cap: no growth */
}

void buf_deinit(struct buf *b)
{
    free(b->data);
    buf_init(b, b->max);
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

int buf_reserve(struct buf *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra)
        return -E2BIG;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
    return 0;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
    int rc = buf_reserve(b, len);
    if (rc)
        return rc;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int buf_append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    int rc = buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int buf_append_json_string(struct buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = b->len;
    int rc = buf_append(b, "\"", 1);
    size_t plain = 0; /* s[plain..i) is still to be copied as it is */
    for (size_t i = 0; rc == 0 && i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c != '"' && c != '\\' && c >= 0x20)
            continue;
        rc = buf_append(b, s + plain, i - plain);
        plain = i + 1;
        if (rc == 0 && c >= 0x20) {
            char esc[2] = {'\\', (char)c};
            rc = buf_append(b, esc, 2);
        } else if (rc == 0) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            rc = buf_append(b, esc, 6);
        }
    }
    if (rc == 0)
        rc = buf_append(b, s + plain, len - plain);
    if (rc == 0)
        rc = buf_append(b, "\"", 1);
    if (rc) { /* all or nothing */
        b->len = start;
        if (b->data)
            b->data[start] = '\0';
    }
    return rc;
}

int buf_append_json_or_null(struct buf *b, const char *s)
{
    return s ? buf_append_json_string(b, s, strlen(s)) : buf_append_str(b, "null");
}

char *buf_steal(struct buf *b, size_t *len)
{
    if (!b->data)
        buf_append(b, "", 0);
    char *d = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}
