/* container_of: from a pointer to a member back to the structure that embeds it. */
#pragma once
#include <stddef.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
