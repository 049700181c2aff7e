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

/* Cuts a file back to just after its last newline: a line without one was being written when
 * the process died, was never acknowledged, and must not be glued to the next append. Returns
 * the new size. */
static off_t drop_torn_tail(const char *path)
{
    off_t size = file_size(path);
    int fd = size > 0 ? open(path, O_RDWR | O_CLOEXEC) : -1;
    if (fd < 0)
        return size;
    off_t keep = size;
    char buf[4096];
    while (keep > 0) {
        off_t from = keep > (off_t)sizeof buf ? keep - (off_t)sizeof buf : 0;
        ssize_t got = pread(fd, buf, (size_t)(keep - from), from);
        if (got <= 0)
            break;
        char *nl = memrchr(buf, '\n', (size_t)got);
        if (nl) {
            keep = from + (nl - buf) + 1;
            break;
        }
        keep = from;
    }
    if (keep != size) {
        log_warn("spool: dropping %lld bytes of an unfinished line in %s", (long long)(size - keep),
                 path);
        if (ftruncate(fd, keep) != 0)
            keep = size;
        fdatasync(fd);
    }
    close(fd);
    return keep;
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
    s->active_size = drop_torn_tail(s->active_path);
    s->replay_size = drop_torn_tail(s->replay_path);
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
    int rc = 0;
    while (done < len) {
        ssize_t w = write(s->fd, data + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = -errno;
            break;
        }
        done += (size_t)w;
    }
    if (rc == 0 && fdatasync(s->fd) != 0)
        rc = -errno;
    if (rc != 0) { /* nothing of a failed append may stay behind to corrupt the next one */
        if (ftruncate(s->fd, s->active_size) != 0)
            log_error("spool: cannot cut back a failed append: %s", strerror(errno));
        return rc;
    }
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
    /* a first line longer than max: extend to the end of that line only */
    while (got == (ssize_t)want && !memchr(buf, '\n', (size_t)got) &&
           s->replay_off + got < s->replay_size) {
        size_t more = want < 65536 ? 65536 : want;
        if ((off_t)got + (off_t)more > s->replay_size - s->replay_off)
            more = (size_t)(s->replay_size - s->replay_off - got);
        buf = xrealloc(buf, (size_t)got + more + 1);
        ssize_t g = pread(fd, buf + got, more, s->replay_off + got);
        if (g <= 0)
            break;
        got += g;
        want = (size_t)got;
        char *nl = memchr(buf, '\n', (size_t)got);
        if (nl) {
            got = nl - buf + 1;
            break;
        }
    }
    close(fd);
    char *last = got > 0 ? memrchr(buf, '\n', (size_t)got) : NULL;
    if (!last) { /* no whole line left (drop_torn_tail makes this rare): nothing to replay */
        free(buf);
        spool_advance(s, (size_t)(s->replay_size - s->replay_off));
        return got < 0 ? -EIO : 0;
    }
    size_t n = (size_t)(last - buf) + 1;
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}

void spool_advance(struct spool *s, size_t len)
{
    s->replay_off += (off_t)len;
    if (s->replay_size && s->replay_off >= s->replay_size) { /* all of it is in the outbox */
        unlink(s->replay_path);
        s->replay_size = s->replay_off = 0;
    }
}
