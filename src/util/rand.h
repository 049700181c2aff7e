/* Cheap per-thread pseudo-random numbers for jitter (not for anything secret). */
#pragma once

/* Uniform in [0, 1). Seeded per thread from the clock and the thread's address on first use. */
double rand_unit(void);
