/* Line-atomic logging to stderr and an optional file (see log.h). */
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/timeutil.h"

static enum log_level min_level = LOG_INFO;
static int file_fd = -1;

static const char *const level_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

int log_level_parse(const char *name)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcasecmp(name, names[i]) == 0)
            return i;
    return -1;
}

static void make_parent_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path || (size_t)(slash - path) >= sizeof dir)
        return;
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    mkdir(dir, 0755); /* one level, like logs/; an error shows up in open() below */
}

int log_init(enum log_level level, const char *path)
{
    min_level = level;
    if (!path || !*path)
        return 0;
    make_parent_dir(path);
    file_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    return file_fd < 0 ? -errno : 0;
}

void log_deinit(void)
{
    if (file_fd >= 0)
        close(file_fd);
    file_fd = -1;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char line[2048];
    size_t n = time_format_iso(time_real_now(), line, sizeof line);
    n += (size_t)snprintf(line + n, sizeof line - n, " %s ", level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += (size_t)m;
    if (n > sizeof line - 2)
        n = sizeof line - 2; /* truncated: keep the line a line */
    line[n++] = '\n';
    write_all(STDERR_FILENO, line, n);
    if (file_fd >= 0)
        write_all(file_fd, line, n);
}
