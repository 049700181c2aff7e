/* What request handlers share: the settings, the cache, the loader and the counters. */
#pragma once
#include "cache/store.h"
#include "db/loader.h"
#include "dispatch/dedup.h"
#include "dispatch/dispatcher.h"
#include "settings.h"
#include "stats.h"

struct app {
    const struct settings *settings;
    struct cache_store *store;
    struct loader *loader;
    struct stats *stats;
    struct dedup *dedup;
    struct dispatcher *dispatcher;
    struct lookup *lookup;
    double started_mono;
};
