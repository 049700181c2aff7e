/*
 * The local spool (SPEC §6.2): where accepted events go while PostgreSQL cannot take them. An
 * append-only file of lines, each line one JSON array of outbox rows, fdatasync'd before the
 * caller acknowledges anything. Replay works on a rotated copy (`outbox.spool.replay`) read in
 * chunks of whole lines, so new appends never race with it and a crash mid-replay only replays
 * again (the outbox ignores rows it already has). A torn last line, from a crash during a write
 * that was never acknowledged, is skipped. Loop thread only.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

struct spool;

/* Creates `dir` if needed and opens the spool; NULL after logging why. */
struct spool *spool_open(const char *dir);
void spool_close(struct spool *s);

/* Appends `len` bytes (whole lines) durably. 0, or a negative errno. */
int spool_append(struct spool *s, const char *data, size_t len);

/* True while anything is spooled (appended or being replayed). */
bool spool_pending(struct spool *s);

/* The next chunk of whole lines to replay (at most about max bytes, at least one line), rotating
 * the active file when no replay is under way. *data is NULL when nothing is left; the caller
 * frees it and calls spool_advance once the chunk is safely in the outbox. */
int spool_next_chunk(struct spool *s, size_t max, char **data, size_t *len);
void spool_advance(struct spool *s, size_t len);
