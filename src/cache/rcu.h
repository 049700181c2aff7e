/*
 * The one place that picks the liburcu flavour. We use the "bulletproof" flavour (urcu-bp):
 * libmicrohttpd creates its worker threads itself, and urcu-bp registers a reader thread on its
 * first read-side lock and unregisters it when the thread exits, so no thread hook is needed and a
 * thread that goes away can never leave a dangling reader behind. The flavour must be included
 * before the hash-table header (liburcu's rule).
 */
#pragma once
#include <urcu-bp.h>
#include <urcu/rculfhash.h>
