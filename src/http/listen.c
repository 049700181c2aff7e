/*
 * SO_REUSEPORT listening group (see listen.h). The sockets are created here rather than by
 * libmicrohttpd so that the group can be checked for a previous owner of the port first:
 * SO_REUSEPORT lets any socket of the same user join, which would make a second instance of the
 * service start "successfully" and take half of the connections.
 */
#include "http/listen.h"

#include <errno.h>
#include <netinet/in.h>
#include <unistd.h>

static socklen_t addr_len(const struct sockaddr_storage *addr)
{
    return addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* One socket bound to addr; SO_REUSEPORT when `shared`. Listening when backlog > 0. */
static int open_one(const struct sockaddr_storage *addr, int shared, int backlog)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0 ||
        (shared && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0) ||
        (addr->ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) < 0) ||
        bind(fd, (const struct sockaddr *)addr, addr_len(addr)) < 0 ||
        (backlog > 0 && listen(fd, backlog) < 0)) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int listen_group_open(const struct sockaddr_storage *addr, int n, int backlog, int *fds)
{
    int probe = open_one(addr, 0, 0);
    if (probe < 0)
        return -1;
    close(probe);
    for (int i = 0; i < n; i++)
        fds[i] = -1;
    for (int i = 0; i < n; i++) {
        fds[i] = open_one(addr, 1, backlog);
        if (fds[i] < 0) {
            int saved = errno;
            listen_group_close(fds, n);
            errno = saved;
            return -1;
        }
    }
    return 0;
}

void listen_group_close(int *fds, int n)
{
    for (int i = 0; i < n; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
        fds[i] = -1;
    }
}
