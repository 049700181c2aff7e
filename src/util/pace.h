/*
 * Pacing for periodic work whose cost grows with the data it walks (the outbox's pending count):
 * the next run waits `factor` times as long as the last one took, so that such work takes at most
 * 1/factor of the time, but never runs more often than every `min` seconds nor less often than
 * every `max`.
 */
#pragma once

/* Seconds from the end of a run that took `took` seconds to the start of the next one. */
double pace_interval(double took, double factor, double min, double max);
