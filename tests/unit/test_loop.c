/*
 * Unit tests for src/io/loop: a watch deleted by a callback gets no event from the batch being
 * dispatched (its owner may free it at once: libcurl drops sockets that way), timers fire, and
 * posted tasks run on the loop.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#include "io/loop.h"

/* A readable pipe with a watch on its read end; each callback deletes and frees the others. */
struct side {
    int fds[2];
    struct io_watch *watch; /* heap: freed by whoever deletes it, as upstream.c does */
    struct side *others[2];
    int calls;
};

static void on_readable(struct io_loop *loop, int fd, uint32_t events, void *ctx)
{
    struct side *s = ctx;
    s->calls++;
    for (int k = 0; k < 2; k++) {
        struct side *o = s->others[k];
        if (o->watch) {
            io_watch_del(loop, o->watch);
            free(o->watch); /* ASan builds catch an event delivered after this */
            o->watch = NULL;
        }
    }
    io_loop_stop(loop); /* the loop still finishes this batch */
}

static void test_deleted_watch_gets_no_event_of_the_batch(void **state)
{
    (void)state;
    struct io_loop *loop = io_loop_new();
    struct side sides[3] = {0};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pipe(sides[i].fds), 0);
        assert_int_equal(write(sides[i].fds[1], "x", 1), 1); /* all readable before the wait */
        sides[i].others[0] = &sides[(i + 1) % 3];
        sides[i].others[1] = &sides[(i + 2) % 3];
        sides[i].watch = malloc(sizeof *sides[i].watch);
        *sides[i].watch = (struct io_watch){
            .fd = sides[i].fds[0], .events = EPOLLIN, .fn = on_readable, .ctx = &sides[i]};
        assert_int_equal(io_watch_add(loop, sides[i].watch), 0);
    }
    io_loop_run(loop);
    /* one epoll batch held all three events; the first callback deleted the other two */
    assert_int_equal(sides[0].calls + sides[1].calls + sides[2].calls, 1);
    for (int i = 0; i < 3; i++) {
        if (sides[i].watch) {
            io_watch_del(loop, sides[i].watch);
            free(sides[i].watch);
        }
        close(sides[i].fds[0]);
        close(sides[i].fds[1]);
    }
    io_loop_free(loop);
}

struct counted_task {
    struct io_task task;
    int runs;
};

static void run_task(struct io_loop *loop, struct io_task *task)
{
    ((struct counted_task *)task)->runs++;
    io_loop_stop(loop);
}

static struct counted_task posted = {.task = {.fn = run_task}};

static void fire(struct io_loop *loop, struct io_timer *t)
{
    (void)t;
    io_post(loop, &posted.task); /* the task stops the loop */
}

static void test_timer_fires_and_posted_task_runs(void **state)
{
    (void)state;
    struct io_loop *loop = io_loop_new();
    struct io_timer t = {.fn = fire};
    io_timer_arm(loop, &t, 0.01);
    io_loop_run(loop);
    assert_false(t.armed);
    assert_int_equal(posted.runs, 1);
    io_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deleted_watch_gets_no_event_of_the_batch),
        cmocka_unit_test(test_timer_fires_and_posted_task_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
