/* Circuit breaker state machine (see breaker.h). */
#include "dispatch/breaker.h"

void breaker_init(struct breaker *b, unsigned threshold, double cooldown)
{
    *b = (struct breaker){
        .threshold = threshold ? threshold : 1, .cooldown = cooldown, .current_cooldown = cooldown};
}

enum breaker_state breaker_state_at(struct breaker *b, double now)
{
    if (b->state == BREAKER_OPEN && now >= b->open_until) {
        b->state = BREAKER_HALF_OPEN;
        b->probing = false;
    }
    return b->state;
}

unsigned breaker_allow(struct breaker *b, double now, unsigned want)
{
    switch (breaker_state_at(b, now)) {
    case BREAKER_CLOSED:
        return want;
    case BREAKER_HALF_OPEN:
        if (b->probing || want == 0)
            return 0;
        b->probing = true;
        return 1;
    default:
        return 0;
    }
}

void breaker_success(struct breaker *b)
{
    b->state = BREAKER_CLOSED;
    b->failures = 0;
    b->probing = false;
    b->current_cooldown = b->cooldown;
}

void breaker_failure(struct breaker *b, double now)
{
    b->failures++;
    if (b->state == BREAKER_HALF_OPEN) {
        double next = b->current_cooldown * 2;
        b->current_cooldown = next > b->cooldown * 16 ? b->cooldown * 16 : next;
    } else if (b->state != BREAKER_CLOSED || b->failures < b->threshold) {
        return;
    }
    b->state = BREAKER_OPEN;
    b->probing = false;
    b->open_until = now + b->current_cooldown;
}

const char *breaker_state_name(enum breaker_state s)
{
    return s == BREAKER_CLOSED ? "closed" : s == BREAKER_OPEN ? "open" : "half-open";
}
