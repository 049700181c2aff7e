/*
 * Recursive-descent JSON validation without allocation (see json_scan.h). Every step checks the
 * end pointer before reading, and depth is bounded, so hostile input costs at most one pass.
 */
#include "cache/json_scan.h"
#include "cache/json_spans.h"

#include <stdint.h>
#include <string.h>

#include "util/hex.h"

struct scan {
    const char *p, *end;
    const char *base; /* the document's first byte: offsets are relative to it */
};

static void ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* One UTF-8 sequence starting at p (a byte >= 0x80); returns its length or 0 when malformed. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    size_t n;
    uint32_t cp;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
        cp = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        cp = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0; /* overlong, surrogate or beyond Unicode */
    return n;
}

/* s->p at the opening quote; leaves it after the closing one. */
static bool string(struct scan *s)
{
    s->p++;
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            s->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            if (s->end - s->p < 2)
                return false;
            char e = s->p[1];
            if (e == 'u') {
                if (s->end - s->p < 6)
                    return false;
                for (int i = 2; i < 6; i++)
                    if (hex_digit(s->p[i]) < 0)
                        return false;
                s->p += 6;
            } else if (strchr("\"\\/bfnrt", e) && e) {
                s->p += 2;
            } else {
                return false;
            }
        } else if (c >= 0x80) {
            size_t n = utf8_len((const unsigned char *)s->p, (const unsigned char *)s->end);
            if (!n)
                return false;
            s->p += n;
        } else {
            s->p++;
        }
    }
    return false;
}

static bool digits(struct scan *s)
{
    const char *start = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return s->p > start;
}

static bool number(struct scan *s)
{
    if (s->p < s->end && *s->p == '-')
        s->p++;
    if (s->p < s->end && *s->p == '0')
        s->p++;
    else if (!digits(s))
        return false;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!digits(s))
            return false;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (!digits(s))
            return false;
    }
    return true;
}

static bool literal(struct scan *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return false;
    s->p += n;
    return true;
}

static bool value(struct scan *s, int depth, enum json_kind *kind);

/* s->p at '{' or '['. Members of a top-level object are reported through m/max/count. */
static bool container(struct scan *s, int depth, bool object, struct json_member *m, int max,
                      int *count)
{
    if (depth > JSON_SCAN_MAX_DEPTH)
        return false;
    char close = object ? '}' : ']';
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return true;
    }
    for (;;) {
        struct json_member cur = {0};
        if (object) {
            if (s->p >= s->end || *s->p != '"')
                return false;
            const char *key = s->p;
            if (!string(s))
                return false;
            cur.key_off = (size_t)(key + 1 - s->base);
            cur.key_len = (size_t)(s->p - key - 2);
            ws(s);
            if (s->p >= s->end || *s->p != ':')
                return false;
            s->p++;
            ws(s);
            const char *v = s->p;
            if (!value(s, depth + 1, &cur.kind))
                return false;
            cur.value_off = (size_t)(v - s->base);
            cur.value_len = (size_t)(s->p - v);
            if (count) {
                if (*count < max)
                    m[*count] = cur;
                (*count)++;
            }
        } else if (!value(s, depth + 1, &cur.kind)) {
            return false;
        }
        ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            ws(s);
            continue;
        }
        if (s->p < s->end && *s->p == close) {
            s->p++;
            return true;
        }
        return false;
    }
}

static bool value(struct scan *s, int depth, enum json_kind *kind)
{
    if (s->p >= s->end)
        return false;
    switch (*s->p) {
    case '{':
        *kind = JK_OBJECT;
        return container(s, depth, true, NULL, 0, NULL);
    case '[':
        *kind = JK_ARRAY;
        return container(s, depth, false, NULL, 0, NULL);
    case '"':
        *kind = JK_STRING;
        return string(s);
    case 't':
        *kind = JK_TRUE;
        return literal(s, "true");
    case 'f':
        *kind = JK_FALSE;
        return literal(s, "false");
    case 'n':
        *kind = JK_NULL;
        return literal(s, "null");
    default:
        *kind = JK_NUMBER;
        return number(s);
    }
}

int json_scan_object(const char *text, size_t len, struct json_member *members, int max)
{
    struct scan s = {text, text + len, text};
    ws(&s);
    if (s.p >= s.end)
        return JSON_SCAN_INVALID;
    int count = 0;
    bool ok;
    bool is_object = *s.p == '{';
    if (is_object) {
        ok = container(&s, 1, true, members, max, &count);
    } else {
        enum json_kind kind;
        ok = value(&s, 1, &kind);
    }
    ws(&s);
    if (!ok || s.p != s.end)
        return JSON_SCAN_INVALID;
    if (!is_object)
        return JSON_SCAN_NOT_OBJECT;
    int stored = count < max ? count : max;
    for (int i = 0; i < stored; i++)
        for (int j = 0; j < i; j++)
            if (members[i].key_len == members[j].key_len &&
                memcmp(text + members[i].key_off, text + members[j].key_off, members[i].key_len) ==
                    0)
                return JSON_SCAN_DUPLICATE;
    return count;
}

bool json_decode_string(const char *s, size_t len, bool quoted, char *out, size_t size)
{
    if (quoted) {
        if (len < 2)
            return false;
        s++;
        len -= 2;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned cp = (unsigned char)s[i];
        if (cp == '\\' && i + 1 < len) {
            char e = s[++i];
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *f = strchr(from, e);
            if (e == 'u' && i + 4 < len) {
                cp = 0;
                for (int k = 1; k <= 4; k++) {
                    int h = hex_digit(s[i + k]);
                    if (h < 0)
                        return false;
                    cp = cp * 16 + (unsigned)h;
                }
                i += 4;
                if (cp == 0 || cp > 0x7f)
                    return false; /* names we compare are ASCII; anything else cannot match */
            } else if (f && e) {
                cp = (unsigned char)to[f - from];
            } else {
                return false;
            }
        }
        if (n + 1 >= size)
            return false;
        out[n++] = (char)cp;
    }
    out[n] = '\0';
    return true;
}

static enum json_kind kind_of(char c)
{
    switch (c) {
    case '{':
        return JK_OBJECT;
    case '[':
        return JK_ARRAY;
    case '"':
        return JK_STRING;
    case 't':
        return JK_TRUE;
    case 'f':
        return JK_FALSE;
    case 'n':
        return JK_NULL;
    default:
        return JK_NUMBER;
    }
}

bool json_find_member(const char *obj, size_t len, const char *name, struct json_member *out)
{
    struct json_span spans[256]; /* validated text: boundaries are all that is needed */
    int n = json_object_spans(obj, len, spans, 256);
    bool any = false;
    for (int i = 0; i < n && i < 256; i++) {
        char key[64];
        if (json_decode_string(obj + spans[i].key_off, spans[i].key_len, false, key, sizeof key) &&
            strcmp(key, name) == 0) {
            *out = (struct json_member){spans[i].key_off, spans[i].key_len, spans[i].value_off,
                                        spans[i].value_len, kind_of(obj[spans[i].value_off])};
            any = true; /* the last one wins, as in most parsers */
        }
    }
    return any;
}
