/*
 * The I/O thread's event loop: epoll over file descriptors (libpq sockets, later libcurl's), a
 * handful of timers, and a queue through which other threads hand work to this thread. Everything
 * that waits on the database lives here, so the HTTP threads never do. All functions except
 * io_post and io_loop_stop must be called on the loop's own thread.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct io_loop;

typedef void (*io_fd_fn)(struct io_loop *loop, int fd, uint32_t events, void *ctx);

struct io_watch {
    int fd;
    uint32_t events;
    io_fd_fn fn;
    void *ctx;
};

struct io_timer {
    double due; /* monotonic seconds; meaningful while armed */
    bool armed;
    void (*fn)(struct io_loop *loop, struct io_timer *t);
    struct io_timer *next; /* on the loop's list while armed */
};

/* Work handed over from another thread; `fn` runs on the loop thread, which then owns `task`. */
struct io_task {
    void (*fn)(struct io_loop *loop, struct io_task *task);
    struct io_task *next;
};

struct io_loop *io_loop_new(void);
void io_loop_free(struct io_loop *loop);

/* Runs until io_loop_stop. */
void io_loop_run(struct io_loop *loop);
/* Any thread: makes io_loop_run return after the current iteration. */
void io_loop_stop(struct io_loop *loop);

/* Registers w (which the caller keeps alive) for EPOLLIN/EPOLLOUT events; 0 or -errno. */
int io_watch_add(struct io_loop *loop, struct io_watch *w);
int io_watch_modify(struct io_loop *loop, struct io_watch *w, uint32_t events);
/* Unregisters w; from then on no event reaches it, not even one already returned by epoll in the
 * batch being dispatched, so its owner may free it at once. */
void io_watch_del(struct io_loop *loop, struct io_watch *w);

/* (Re)arms t to fire once after `delay` seconds; disarm is idempotent. */
void io_timer_arm(struct io_loop *loop, struct io_timer *t, double delay);
void io_timer_disarm(struct io_loop *loop, struct io_timer *t);

/* Any thread: queues task to run on the loop thread, in order of posting. */
void io_post(struct io_loop *loop, struct io_task *task);

/* After io_loop_run returned: runs the tasks posted meanwhile, once. */
void io_loop_run_pending(struct io_loop *loop);
