/*
 * Allocation wrappers for application code: out of memory is not recoverable for a cache
 * service, so these abort with a message instead of returning NULL. Library-tier code that sizes
 * buffers from network or database input uses bounded buffers (buf.h) and reports errors instead.
 */
#pragma once
#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
