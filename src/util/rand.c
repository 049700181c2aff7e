/* xorshift64* per thread (see rand.h); jitter needs spread, not cryptographic quality. */
#include "util/rand.h"

#include <stdint.h>
#include <time.h>

static __thread uint64_t state;

double rand_unit(void)
{
    if (state == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        state = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&state;
        if (state == 0)
            state = 88172645463325252ull;
    }
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return (double)((state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}
