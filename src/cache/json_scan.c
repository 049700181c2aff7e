/*
 * Recursive-descent JSON validation without allocation (see json_scan.h). Every step checks the
 * end pointer before reading, and depth is bounded, so hostile input costs at most one pass.
 * Strings, most of a config's bytes, are crossed eight bytes at a time up to the first byte that
 * needs a look (a quote, a backslash, a control character or UTF-8).
 */
#include "cache/json_scan.h"

#include <stdint.h>
#include <string.h>

#include "util/hex.h"

struct scan {
    const char *p, *end;
    const char *base;         /* the document's first byte: offsets are relative to it */
    const char *const *inner; /* names looked for one level down (json_scan_object) */
    size_t inner_len[JSON_SCAN_MAX_INNER];
    int ninner;
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

/* The high bit of each of the eight bytes in x that is a quote, a backslash, below 0x20 or above
 * 0x7f, and maybe of bytes above the first such one. Each term is the "has a zero byte" test:
 * exact for the lowest byte it flags, since a false flag needs a borrow from a byte below. */
static uint64_t special8(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');
    uint64_t hit = ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) |
                   ((x - ones * 0x20) & ~x) | x;
    return hit & high;
}

/* Advances s->p inside a string to the first byte that needs a look, or to the end. */
static void skip_plain(struct scan *s)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ /* the lowest flagged byte comes first in memory */
    uint64_t word, hit;
    while (s->end - s->p >= 8) {
        memcpy(&word, s->p, 8);
        hit = special8(word);
        if (hit) {
            s->p += __builtin_ctzll(hit) / 8;
            return;
        }
        s->p += 8;
    }
#endif
    while (s->p < s->end && (unsigned char)*s->p >= 0x20 && (unsigned char)*s->p < 0x80 &&
           *s->p != '"' && *s->p != '\\')
        s->p++;
}

/* s->p at the opening quote; leaves it after the closing one. */
static bool string(struct scan *s)
{
    s->p++;
    for (;;) {
        skip_plain(s);
        if (s->p >= s->end)
            return false;
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

static bool value(struct scan *s, int depth, enum json_kind *kind, struct json_member *owner);

/* Which inner name the raw key text [key, key + len) decodes to, or -1. */
static int inner_index(const struct scan *s, const char *key, size_t len)
{
    char decoded[64];
    if (memchr(key, '\\', len)) {
        if (!json_decode_string(key, len, false, decoded, sizeof decoded))
            return -1; /* too long, or not ASCII: no inner name */
        key = decoded;
        len = strlen(decoded);
    }
    for (int k = 0; k < s->ninner; k++)
        if (len == s->inner_len[k] && memcmp(key, s->inner[k], len) == 0)
            return k;
    return -1;
}

/* s->p at '{' or '['. Members of the top-level object are reported through m/max/count; members
 * of an object that is a top-level member's value are matched against the inner names and
 * recorded in `owner`. */
static bool container(struct scan *s, int depth, bool object, struct json_member *m, int max,
                      int *count, struct json_member *owner)
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
            if (!value(s, depth + 1, &cur.kind, count ? &cur : NULL))
                return false;
            cur.value_off = (size_t)(v - s->base);
            cur.value_len = (size_t)(s->p - v);
            if (count) {
                if (*count < max)
                    m[*count] = cur;
                (*count)++;
            } else if (owner) {
                int k = inner_index(s, key + 1, cur.key_len);
                if (k >= 0)
                    owner->inner[k] = (struct json_slice){cur.value_off, cur.value_len};
            }
        } else if (!value(s, depth + 1, &cur.kind, NULL)) {
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

/* `owner`: the top-level member whose value this is, when it is one. */
static bool value(struct scan *s, int depth, enum json_kind *kind, struct json_member *owner)
{
    if (s->p >= s->end)
        return false;
    switch (*s->p) {
    case '{':
        *kind = JK_OBJECT;
        return container(s, depth, true, NULL, 0, NULL, owner);
    case '[':
        *kind = JK_ARRAY;
        return container(s, depth, false, NULL, 0, NULL, NULL);
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

int json_scan_object(const char *text, size_t len, const char *const *inner,
                     struct json_member *members, int max)
{
    struct scan s = {.p = text, .end = text + len, .base = text, .inner = inner};
    for (; inner && inner[s.ninner] && s.ninner < JSON_SCAN_MAX_INNER; s.ninner++)
        s.inner_len[s.ninner] = strlen(inner[s.ninner]);
    ws(&s);
    if (s.p >= s.end)
        return JSON_SCAN_INVALID;
    int count = 0;
    bool ok;
    bool is_object = *s.p == '{';
    if (is_object) {
        ok = container(&s, 1, true, members, max, &count, NULL);
    } else {
        enum json_kind kind;
        ok = value(&s, 1, &kind, NULL);
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
