/*
 * A circuit breaker per integration service (SPEC §6.2): after `threshold` consecutive failures
 * it opens and sends nothing for `cooldown` seconds (doubling while probes keep failing, up to
 * 16x), then lets one probe through (half-open); a success closes it. Pure state machine; times are
 * passed in, so it is unit-tested without clocks.
 */
#pragma once
#include <stdbool.h>

enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };

struct breaker {
    enum breaker_state state;
    unsigned failures; /* consecutive */
    unsigned threshold;
    double cooldown, current_cooldown;
    double open_until;
    bool probing; /* half-open: the one probe is out */
};

void breaker_init(struct breaker *b, unsigned threshold, double cooldown);
/* The state at `now`: an open breaker whose cooldown has passed becomes half-open. */
enum breaker_state breaker_state_at(struct breaker *b, double now);
/* How many deliveries may start now, given `want`: want when closed, 0 or 1 otherwise. */
unsigned breaker_allow(struct breaker *b, double now, unsigned want);
void breaker_success(struct breaker *b);
void breaker_failure(struct breaker *b, double now);
const char *breaker_state_name(enum breaker_state s);
