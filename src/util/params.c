/* Path-parameter decoding and validation (see params.h); one table row per kind. */
#include "util/params.h"

#include "util/hex.h"

#include <string.h>

struct param_rule {
    const char *extra; /* allowed besides the classes below */
    bool upper, lower, digits;
    const char *error;
};

static const struct param_rule rules[] = {
    [PARAM_ENTERPRISE] = {"_-", true, true, true, "invalid enterprise_number"},
    [PARAM_TYPE] = {"_", false, true, true, "invalid integration_type"},
    [PARAM_PHONE] = {"+ -()", false, false, true, "invalid phone"},
};

static bool char_ok(const struct param_rule *r, unsigned char c)
{
    if (c >= '0' && c <= '9')
        return r->digits;
    if (c >= 'a' && c <= 'z')
        return r->lower;
    if (c >= 'A' && c <= 'Z')
        return r->upper;
    return c != '\0' && strchr(r->extra, c) != NULL;
}

bool param_valid(enum param_kind kind, const char *s, size_t len)
{
    if (len == 0 || len > PARAM_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!char_ok(&rules[kind], (unsigned char)s[i]))
            return false;
    return true;
}

int param_parse(enum param_kind kind, const char *raw, size_t len, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)raw[i];
        if (c == '%') {
            if (len - i < 3)
                return -1;
            int hi = hex_digit(raw[i + 1]), lo = hex_digit(raw[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = hi * 16 + lo;
            i += 2;
        }
        if (n == PARAM_MAX_LEN)
            return -1;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return param_valid(kind, out, n) ? 0 : -1;
}

const char *param_error(enum param_kind kind)
{
    return rules[kind].error;
}
