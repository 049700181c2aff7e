/*
 * Listening sockets for the HTTP threads: one socket per thread, all bound to the same address
 * with SO_REUSEPORT, so the kernel spreads new connections evenly over the threads (nginx's
 * `reuseport`). One shared socket accepted by a pool of threads let whichever thread woke first
 * take most connections, and the p99 followed the busiest thread.
 */
#pragma once
#include <sys/socket.h>

/* Opens n (>= 1) non-blocking listening sockets on addr into fds. A plain bind without
 * SO_REUSEPORT is tried first and released, so an address that another process (another instance
 * of the service, say) already listens on fails with EADDRINUSE instead of being shared silently.
 * Returns 0, or -1 with errno set and no socket left open. */
int listen_group_open(const struct sockaddr_storage *addr, int n, int backlog, int *fds);

/* Closes the sockets in fds that are >= 0 and marks them -1. */
void listen_group_close(int *fds, int n);
