/*
 * A growable byte buffer with a hard maximum (after curl's dynbuf): input from the network or the
 * database is appended through it, and crossing the maximum is an error the caller reports, never
 * an unbounded allocation. The content is always NUL-terminated for convenience.
 */
#pragma once
#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data; /* NUL-terminated; NULL until the first append */
    size_t len;
    size_t cap;
    size_t max; /* appends that would exceed this fail with -E2BIG */
};

void buf_init(struct buf *b, size_t max);
/* Writes into the caller's `storage` of `size` bytes (at least 1) and never grows: an append that
 * would not fit, NUL included, fails with -E2BIG. The storage stays the caller's, so neither
 * buf_deinit nor buf_steal applies. */
void buf_init_fixed(struct buf *b, char *storage, size_t size);
void buf_deinit(struct buf *b);
void buf_reset(struct buf *b);
/* 0, or -E2BIG when the maximum would be exceeded (the buffer is left unchanged). */
int buf_append(struct buf *b, const void *data, size_t len);
/* Makes room for `extra` more bytes at once (a size hint that saves growing step by step);
 * 0, or -E2BIG as buf_append. */
int buf_reserve(struct buf *b, size_t extra);
int buf_append_str(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included. */
int buf_append_json_string(struct buf *b, const char *s, size_t len);
/* Appends the NUL-terminated s as a JSON string, or null when s is NULL. */
int buf_append_json_or_null(struct buf *b, const char *s);
/* Hands the data to the caller (who frees it) and leaves the buffer empty. */
char *buf_steal(struct buf *b, size_t *len);
