/* Hexadecimal digits both ways: the percent-decoder and the JSON scanner read them, event ids are
 * written with them. */
#pragma once
#include <stddef.h>

/* 0-15, or -1 when c is not a hexadecimal digit. */
static inline int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Writes the n bytes as 2n lowercase digits and a NUL: `out` needs 2n + 1 bytes. */
static inline void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}
