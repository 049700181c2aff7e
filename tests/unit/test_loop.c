/*
 * Unit tests for src/io/loop: a watch deleted by a callback gets no event from the batch being
 * dispatched (its owner may free it at once: libcurl drops sockets that way), timers fire, posted
 * tasks run on the loop, and a timer that re-arms itself with no delay lets the sockets have a turn
 * between its runs.
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

/* A timer that re-arms itself with no delay (work cut into turns, as pgconn.c hands over rows),
 * and a socket that is readable all along: the log records who ran in which order. */
struct turns {
    struct io_timer timer;
    struct io_watch watch;
    char log[16];
    int n;
};

static void turn_timer(struct io_loop *loop, struct io_timer *t)
{
    struct turns *tu = (struct turns *)t; /* the timer is the first member */
    tu->log[tu->n++] = 'T';
    if (tu->n < 8)
        io_timer_arm(loop, t, 0);
    else
        io_loop_stop(loop);
}

static void turn_socket(struct io_loop *loop, int fd, uint32_t events, void *ctx)
{
    (void)loop, (void)fd, (void)events;
    struct turns *tu = ctx;
    if (tu->n < 15)
        tu->log[tu->n++] = 'S'; /* left readable: level-triggered, it comes back every turn */
}

static void test_rearmed_timer_lets_sockets_in(void **state)
{
    (void)state;
    struct io_loop *loop = io_loop_new();
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], "x", 1), 1);
    struct turns tu = {.timer = {.fn = turn_timer}};
    tu.watch = (struct io_watch){.fd = fds[0], .events = EPOLLIN, .fn = turn_socket, .ctx = &tu};
    io_timer_arm(loop, &tu.timer, 0);
    assert_int_equal(io_watch_add(loop, &tu.watch), 0);
    io_loop_run(loop);
    /* the first run comes before the first wait; then socket and timer take turns (before, the
     * timer ran again and again within one pass and the socket waited for all of them) */
    assert_string_equal(tu.log, "TSTSTSTST");
    io_watch_del(loop, &tu.watch);
    io_timer_disarm(loop, &tu.timer);
    close(fds[0]);
    close(fds[1]);
    io_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deleted_watch_gets_no_event_of_the_batch),
        cmocka_unit_test(test_timer_fires_and_posted_task_runs),
        cmocka_unit_test(test_rearmed_timer_lets_sockets_in),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
