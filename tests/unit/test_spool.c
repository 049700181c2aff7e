/*
 * Unit tests for src/dispatch/spool (SPEC §6.2) on real files in a mkdtemp directory: durable
 * appends, replay in chunks of whole lines, appends during a replay coming after it, clean-up when
 * everything is replayed, a torn last line never replayed as a line, and data from an earlier run.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "dispatch/spool.h"
#include "util/log.h"

struct fixture {
    char dir[64];
    char active[128], replay[128];
    struct spool *s; /* closed by teardown, so a failed test leaks nothing */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/ic-spool-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->active, sizeof f->active, "%s/outbox.spool", f->dir);
    snprintf(f->replay, sizeof f->replay, "%s/outbox.spool.replay", f->dir);
    log_init(LOG_ERROR, NULL); /* spool_open warns about an earlier run's data: expected here */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    spool_close(f->s);
    unlink(f->active);
    unlink(f->replay);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* (Re)opens the fixture's spool, closing the previous one as a stopping process would. */
static struct spool *reopen(struct fixture *f)
{
    spool_close(f->s);
    f->s = spool_open(f->dir);
    assert_non_null(f->s);
    return f->s;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void append(struct spool *s, const char *text)
{
    assert_int_equal(spool_append(s, text, strlen(text)), 0);
}

/* Writes bytes straight into a file, as a crash in the middle of an append would leave them. */
static void write_raw(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0640);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* The next chunk, copied into a static buffer (so a failing assert leaks nothing), or NULL;
 * checks that it is whole lines. */
static const char *next(struct spool *s, size_t max)
{
    static char chunk[4096];
    char *data;
    size_t len;
    assert_int_equal(spool_next_chunk(s, max, &data, &len), 0);
    if (!data)
        return NULL;
    snprintf(chunk, sizeof chunk, "%s", data);
    free(data);
    assert_int_equal(strlen(chunk), len);
    if (len == 0 || chunk[len - 1] != '\n')
        fail_msg("chunk is not whole lines: \"%s\" (%zu bytes)", chunk, len);
    return chunk;
}

/* Replays everything (at most 100 chunks), advancing after each; the concatenation. */
static char *replay_all(struct spool *s, size_t max)
{
    static char all[4096];
    size_t n = 0;
    all[0] = '\0';
    for (int i = 0; i < 100; i++) {
        const char *c = next(s, max);
        if (!c)
            return all;
        size_t len = strlen(c);
        assert_true(n + len < sizeof all);
        memcpy(all + n, c, len + 1);
        n += len;
        spool_advance(s, len);
    }
    fail_msg("replay does not end");
    return NULL;
}

static void test_append_and_pending(void **state)
{
    struct fixture *f = *state;
    struct spool *s = reopen(f);
    assert_false(spool_pending(s));
    assert_null(next(s, 1024));
    append(s, "[1]\n");
    assert_true(spool_pending(s));
    append(s, "[2]\n[3]\n");
    assert_true(spool_pending(s));
    assert_string_equal(replay_all(s, 1024), "[1]\n[2]\n[3]\n");
    assert_false(spool_pending(s));
}

static void test_chunks_are_whole_lines(void **state)
{
    struct fixture *f = *state;
    struct spool *s = reopen(f);
    append(s, "[\"aaaa\"]\n[\"bbbb\"]\n[\"cccc\"]\n"); /* three lines of 9 bytes */
    const char *c = next(s, 20);                       /* room for two lines and a bit */
    assert_string_equal(c, "[\"aaaa\"]\n[\"bbbb\"]\n");
    c = next(s, 20); /* not advanced: the same chunk again */
    assert_string_equal(c, "[\"aaaa\"]\n[\"bbbb\"]\n");
    spool_advance(s, strlen(c));
    assert_true(spool_pending(s));
    c = next(s, 20);
    assert_string_equal(c, "[\"cccc\"]\n");
    spool_advance(s, strlen(c));
    assert_false(spool_pending(s));
    assert_null(next(s, 20));
}

static void test_appends_during_replay(void **state)
{
    struct fixture *f = *state;
    struct spool *s = reopen(f);
    append(s, "[1]\n[2]\n");
    const char *c = next(s, 4); /* replay under way: the active file was rotated */
    assert_string_equal(c, "[1]\n");
    assert_true(exists(f->replay));
    append(s, "[3]\n"); /* goes to the new active file */
    spool_advance(s, strlen(c));
    append(s, "[4]\n");
    assert_true(spool_pending(s));
    assert_string_equal(replay_all(s, 1024), "[2]\n[3]\n[4]\n");
    assert_false(spool_pending(s));
}

/* Replays "[1]\n[2]\n" in one chunk and advances past it. */
static void replay_two_lines(struct spool *s)
{
    append(s, "[1]\n[2]\n");
    const char *c = next(s, 1024);
    assert_string_equal(c, "[1]\n[2]\n");
    spool_advance(s, strlen(c));
}

/* Once every chunk is advanced nothing is pending and the replay file is gone. */
static void test_done_cleans_up(void **state)
{
    struct fixture *f = *state;
    struct spool *s = reopen(f);
    replay_two_lines(s);
    assert_false(spool_pending(s));
    assert_false(exists(f->replay));
}

/* A restart right after a finished replay (the dispatcher stops asking for chunks as soon as
 * nothing is pending) has nothing from an earlier run to replay again. */
static void test_restart_after_done(void **state)
{
    struct fixture *f = *state;
    struct spool *s = reopen(f);
    replay_two_lines(s);
    assert_false(spool_pending(s));
    s = reopen(f);
    assert_false(spool_pending(s));
    assert_null(next(s, 1024));
}

static void test_torn_tail_alone(void **state)
{
    struct fixture *f = *state;
    write_raw(f->active, "[\"to"); /* crashed mid-write, never acknowledged */
    struct spool *s = reopen(f);
    assert_string_equal(replay_all(s, 1024), "");
}

static void test_torn_tail_after_lines(void **state)
{
    struct fixture *f = *state;
    write_raw(f->active, "[1]\n[2]\n[\"to");
    struct spool *s = reopen(f);
    assert_true(spool_pending(s));
    assert_string_equal(replay_all(s, 1024), "[1]\n[2]\n");
}

/* An acknowledged append made after a torn tail must come back as its own line, not glued to the
 * torn bytes. */
static void test_torn_tail_then_append(void **state)
{
    struct fixture *f = *state;
    write_raw(f->active, "[1]\n[\"to");
    struct spool *s = reopen(f);
    append(s, "[2]\n");
    assert_string_equal(replay_all(s, 1024), "[1]\n[2]\n");
}

static void test_earlier_run(void **state)
{
    struct fixture *f = *state;
    struct spool *s = reopen(f);
    append(s, "[1]\n");
    s = reopen(f); /* as if the process had stopped and started again */
    assert_true(spool_pending(s));
    append(s, "[2]\n");
    assert_string_equal(replay_all(s, 1024), "[1]\n[2]\n");
}

static void test_earlier_run_mid_replay(void **state)
{
    struct fixture *f = *state;
    struct spool *s = reopen(f);
    append(s, "[1]\n[2]\n");
    const char *c = next(s, 4);
    assert_string_equal(c, "[1]\n");
    append(s, "[3]\n");
    s = reopen(f); /* stopped mid-replay, nothing advanced: it all comes again */
    assert_true(spool_pending(s));
    assert_string_equal(replay_all(s, 1024), "[1]\n[2]\n[3]\n");
    assert_false(spool_pending(s));
}

/* A line longer than the chunk size still comes whole, and alone. */
static void test_chunk_smaller_than_line(void **state)
{
    struct fixture *f = *state;
    struct spool *s = reopen(f);
    append(s, "[\"a long first line\"]\n[\"second\"]\n[\"third\"]\n");
    const char *c = next(s, 4);
    assert_string_equal(c, "[\"a long first line\"]\n");
    spool_advance(s, strlen(c));
    assert_string_equal(replay_all(s, 4), "[\"second\"]\n[\"third\"]\n");
}

static void test_open_creates_dir(void **state)
{
    struct fixture *f = *state;
    char nested[128];
    snprintf(nested, sizeof nested, "%s/a/b", f->dir);
    struct spool *s = spool_open(nested);
    assert_non_null(s);
    append(s, "[1]\n");
    spool_close(s);
    char file[160];
    snprintf(file, sizeof file, "%s/outbox.spool", nested);
    assert_true(exists(file));
    unlink(file);
    rmdir(nested);
    snprintf(nested, sizeof nested, "%s/a", f->dir);
    rmdir(nested);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_append_and_pending),
        T(test_chunks_are_whole_lines),
        T(test_appends_during_replay),
        T(test_done_cleans_up),
        T(test_restart_after_done),
        T(test_torn_tail_alone),
        T(test_torn_tail_after_lines),
        T(test_torn_tail_then_append),
        T(test_earlier_run),
        T(test_earlier_run_mid_replay),
        T(test_chunk_smaller_than_line),
        T(test_open_creates_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
