/*
 * epoll loop with timers and a cross-thread task queue (see loop.h). Timers are kept on a short
 * unsorted list: the service has fewer than a dozen, so a scan per iteration is cheaper and
 * simpler than a heap. The task queue is a mutex-protected list plus an eventfd that wakes epoll.
 */
#include "io/loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/timeutil.h"
#include "util/xalloc.h"

struct io_loop {
    int epfd;
    struct io_watch wake; /* eventfd for io_post and io_loop_stop */
    atomic_bool stopping;
    struct io_timer *timers;
    pthread_mutex_t lock; /* guards the task queue only */
    struct io_task *head, *tail;
    /* The batch epoll_wait returned, while its events are dispatched: a watch deleted by one
     * callback (libcurl dropping a socket, say, whose memory its owner then frees) may still
     * have an event further on, which must not be delivered (io_watch_del). */
    struct epoll_event *batch;
    int batch_n, batch_i;
};

static void drain_tasks(struct io_loop *loop, int fd, uint32_t events, void *ctx)
{
    uint64_t n;
    while (read(fd, &n, sizeof n) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&loop->lock);
    struct io_task *t = loop->head;
    loop->head = loop->tail = NULL;
    pthread_mutex_unlock(&loop->lock);
    while (t) {
        struct io_task *next = t->next; /* t belongs to fn from here on */
        t->fn(loop, t);
        t = next;
    }
}

struct io_loop *io_loop_new(void)
{
    struct io_loop *loop = xcalloc(1, sizeof *loop);
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->epfd < 0 || efd < 0) {
        perror("FATAL epoll/eventfd");
        abort();
    }
    pthread_mutex_init(&loop->lock, NULL);
    loop->wake = (struct io_watch){.fd = efd, .events = EPOLLIN, .fn = drain_tasks};
    io_watch_add(loop, &loop->wake);
    return loop;
}

void io_loop_free(struct io_loop *loop)
{
    if (!loop)
        return;
    close(loop->wake.fd);
    close(loop->epfd);
    pthread_mutex_destroy(&loop->lock);
    free(loop);
}

int io_watch_add(struct io_loop *loop, struct io_watch *w)
{
    struct epoll_event ev = {.events = w->events, .data.ptr = w};
    return epoll_ctl(loop->epfd, EPOLL_CTL_ADD, w->fd, &ev) ? -errno : 0;
}

int io_watch_modify(struct io_loop *loop, struct io_watch *w, uint32_t events)
{
    if (w->events == events)
        return 0;
    w->events = events;
    struct epoll_event ev = {.events = events, .data.ptr = w};
    return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, w->fd, &ev) ? -errno : 0;
}

void io_watch_del(struct io_loop *loop, struct io_watch *w)
{
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    for (int i = loop->batch_i + 1; i < loop->batch_n; i++)
        if (loop->batch[i].data.ptr == w)
            loop->batch[i].data.ptr = NULL;
}

void io_timer_arm(struct io_loop *loop, struct io_timer *t, double delay)
{
    io_timer_disarm(loop, t);
    t->due = time_mono_now() + delay;
    t->armed = true;
    t->next = loop->timers;
    loop->timers = t;
}

void io_timer_disarm(struct io_loop *loop, struct io_timer *t)
{
    if (!t->armed)
        return;
    for (struct io_timer **p = &loop->timers; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    t->armed = false;
    t->next = NULL;
}

void io_post(struct io_loop *loop, struct io_task *task)
{
    task->next = NULL;
    pthread_mutex_lock(&loop->lock);
    if (loop->tail)
        loop->tail->next = task;
    else
        loop->head = task;
    loop->tail = task;
    pthread_mutex_unlock(&loop->lock);
    uint64_t one = 1;
    while (write(loop->wake.fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

void io_loop_stop(struct io_loop *loop)
{
    atomic_store(&loop->stopping, true);
    uint64_t one = 1;
    while (write(loop->wake.fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

/* Fires every timer that was due when called; returns the milliseconds until the next one (-1:
 * none, 0: one is due already). A timer armed meanwhile, even with no delay, waits for the next
 * call, after one look at the sockets: work cut into turns (pgconn.c) re-arms itself that way. */
static int run_timers(struct io_loop *loop)
{
    const double start = time_mono_now();
    for (;;) {
        struct io_timer *due = NULL;
        for (struct io_timer *t = loop->timers; t; t = t->next)
            if (t->due <= start && (!due || t->due < due->due))
                due = t;
        if (!due)
            break;
        io_timer_disarm(loop, due);
        due->fn(loop, due); /* may re-arm any timer, this one included */
    }
    double now = time_mono_now();
    double next = -1;
    for (struct io_timer *t = loop->timers; t; t = t->next)
        if (next < 0 || t->due < next)
            next = t->due;
    if (next < 0)
        return -1;
    double ms = (next - now) * 1000.0 + 0.999;
    return ms < 0 ? 0 : (ms > 60000 ? 60000 : (int)ms);
}

void io_loop_run(struct io_loop *loop)
{
    struct epoll_event events[64];
    int timeout = run_timers(loop);
    while (!atomic_load(&loop->stopping)) {
        int n = epoll_wait(loop->epfd, events, 64, timeout);
        if (n < 0 && errno != EINTR) {
            perror("FATAL epoll_wait");
            abort();
        }
        loop->batch = events;
        loop->batch_n = n < 0 ? 0 : n;
        for (loop->batch_i = 0; loop->batch_i < loop->batch_n; loop->batch_i++) {
            struct io_watch *w = events[loop->batch_i].data.ptr;
            if (w) /* NULL: deleted by an earlier callback of this batch */
                w->fn(loop, w->fd, events[loop->batch_i].events, w->ctx);
        }
        loop->batch_n = 0;
        /* Timers after I/O: when the thread was held up, the answers that arrived meanwhile are
         * taken in before any deadline is judged, so a late wake-up is not a timed-out query. */
        timeout = run_timers(loop);
    }
}

void io_loop_run_pending(struct io_loop *loop)
{
    drain_tasks(loop, loop->wake.fd, EPOLLIN, NULL);
}
