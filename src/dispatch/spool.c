/* Durable append-only spool with chunked replay (see spool.h). */
#include "dispatch/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"
#include "util/xalloc.h"

struct spool {
    char *active_path, *replay_path;
    int fd;            /* active file, O_APPEND */
    off_t active_size; /* bytes appended and not yet rotated */
    off_t replay_off;  /* how far the replay file has been taken into the outbox */
    off_t replay_size; /* 0: no replay file */
};

static int mkdirs(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return -ENAMETOOLONG;
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0750) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(path, 0750) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : 0;
}

struct spool *spool_open(const char *dir)
{
    int rc = mkdirs(dir);
    if (rc) {
        log_error("cannot create the spool directory %s: %s", dir, strerror(-rc));
        return NULL;
    }
    struct spool *s = xcalloc(1, sizeof *s);
    size_t n = strlen(dir) + 32;
    s->active_path = xmalloc(n);
    s->replay_path = xmalloc(n);
    snprintf(s->active_path, n, "%s/outbox.spool", dir);
    snprintf(s->replay_path, n, "%s/outbox.spool.replay", dir);
    s->fd = open(s->active_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (s->fd < 0) {
        log_error("cannot open the spool %s: %s", s->active_path, strerror(errno));
        spool_close(s);
        return NULL;
    }
    s->active_size = file_size(s->active_path);
    s->replay_size = file_size(s->replay_path);
    if (s->active_size || s->replay_size)
        log_warn("spool holds %lld bytes of events from an earlier run; they go to the outbox "
                 "once the database is reachable",
                 (long long)(s->active_size + s->replay_size));
    return s;
}

void spool_close(struct spool *s)
{
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    free(s->active_path);
    free(s->replay_path);
    free(s);
}

int spool_append(struct spool *s, const char *data, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(s->fd, data + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        done += (size_t)w;
    }
    if (fdatasync(s->fd) != 0)
        return -errno;
    s->active_size += (off_t)len;
    return 0;
}

bool spool_pending(struct spool *s)
{
    return s->active_size > 0 || s->replay_size > s->replay_off;
}

/* Moves the active file aside for replay and starts a new, empty active file. */
static int rotate(struct spool *s)
{
    if (rename(s->active_path, s->replay_path) != 0)
        return -errno;
    close(s->fd);
    s->fd = open(s->active_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (s->fd < 0)
        return -errno;
    s->replay_size = s->active_size;
    s->replay_off = 0;
    s->active_size = 0;
    return 0;
}

int spool_next_chunk(struct spool *s, size_t max, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    if (s->replay_size <= s->replay_off) {
        if (s->replay_size)
            unlink(s->replay_path); /* finished */
        s->replay_size = s->replay_off = 0;
        if (s->active_size == 0)
            return 0;
        int rc = rotate(s);
        if (rc)
            return rc;
    }
    int fd = open(s->replay_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t want = (size_t)(s->replay_size - s->replay_off);
    if (want > max)
        want = max;
    char *buf = xmalloc(want + 1);
    ssize_t got = pread(fd, buf, want, s->replay_off);
    /* a single line longer than max: read on until its end */
    while (got == (ssize_t)want && !memchr(buf, '\n', (size_t)got) &&
           s->replay_off + got < s->replay_size) {
        size_t more = (size_t)(s->replay_size - s->replay_off) - (size_t)got;
        buf = xrealloc(buf, (size_t)got + more + 1);
        ssize_t g = pread(fd, buf + got, more, s->replay_off + got);
        if (g <= 0)
            break;
        got += g;
        want = (size_t)got;
    }
    close(fd);
    if (got < 0) {
        free(buf);
        return -EIO;
    }
    char *last = memrchr(buf, '\n', (size_t)got);
    size_t n = last ? (size_t)(last - buf) + 1 : (size_t)got; /* no newline: a torn tail */
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}

void spool_advance(struct spool *s, size_t len)
{
    s->replay_off += (off_t)len;
}
