/*
 * log.c: the relay's only way to say what happened, one line per event.
 *
 * Each line is built in a stack buffer and handed to the kernel in one
 * write(2) on an O_APPEND descriptor, which is what keeps lines from the
 * master and every worker whole when they share a file.  The module must
 * not allocate, block on anything but that write, or use stdio: it runs in
 * the middle of event loops and right after fork.  It is not for signal
 * handlers (gmtime_r and vsnprintf are not async-signal-safe).
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "relay/log.h"

/*
 * Room kept at the end of every line for " pid=<10 digits>
 * worker=<11 digits>\n", so a cut line still says who wrote it.
 */
#define RELAY_LOG_TRAILER_MAX 48

struct relay_log_state {
    int fd;                 /* 2 until relay_log_open() names a file */
    int level;
    int worker;             /* -1 in the master */
    char path[PATH_MAX];    /* "" while on stderr */
};

struct relay_log_line {
    char buf[RELAY_LOG_LINE_MAX];
    size_t len;
    size_t cap;             /* where pairs must stop: buf minus trailer */
    int cut;                /* a pair did not fit: add no more */
};

static struct relay_log_state relay_log_state = {
    2, RELAY_LOG_INFO, -1, ""
};

static const char *const relay_log_keys[] = {
    "server_id", "conn_id", "binary_conn_id", "device_name", "remote",
    "binary_version", "err", "path", "close_code", "token_fp", "duration",
    "worker", "pid", NULL
};


int
relay_log_open(const char *path, int level)
{
    int fd;

    if (path == NULL || path[0] == '\0') {
        if (relay_log_state.fd != 2) {
            close(relay_log_state.fd);
        }
        relay_log_state.fd = 2;
        relay_log_state.path[0] = '\0';
        relay_log_state.level = level;
        return 0;
    }

    if (strlen(path) >= sizeof(relay_log_state.path)) {
        errno = ENAMETOOLONG;
        return -1;
    }

    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY,
              0640);
    if (fd == -1) {
        return -1;
    }

    if (relay_log_state.fd != 2) {
        close(relay_log_state.fd);
    }
    relay_log_state.fd = fd;
    memcpy(relay_log_state.path, path, strlen(path) + 1);
    relay_log_state.level = level;

    return 0;
}


int
relay_log_reopen(void)
{
    int fd;
    int saved;

    if (relay_log_state.path[0] == '\0') {
        return 0;
    }

    fd = open(relay_log_state.path,
              O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    if (fd == -1) {
        return -1;
    }

    /*
     * dup3 swaps the file under the same number atomically: there is no
     * moment without a log descriptor, and a master that dup2'ed it onto
     * stderr is not left pointing at a closed slot.
     */
    if (dup3(fd, relay_log_state.fd, O_CLOEXEC) == -1) {
        saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    close(fd);

    return 0;
}


void
relay_log_set_level(int level)
{
    relay_log_state.level = level;
}


int
relay_log_get_level(void)
{
    return relay_log_state.level;
}


int
relay_log_get_fd(void)
{
    return relay_log_state.fd;
}


void
relay_log_set_worker(int slot)
{
    relay_log_state.worker = slot;
}


int
relay_log_level_parse(const char *word)
{
    static const struct {
        const char *word;
        int level;
    } words[] = {
        { "alert", RELAY_LOG_ALERT },   { "err", RELAY_LOG_ERR },
        { "error", RELAY_LOG_ERR },     { "warn", RELAY_LOG_WARN },
        { "warning", RELAY_LOG_WARN },  { "notice", RELAY_LOG_NOTICE },
        { "info", RELAY_LOG_INFO },     { "debug", RELAY_LOG_DEBUG },
    };
    size_t i;

    if (word == NULL) {
        return -1;
    }

    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strcasecmp(word, words[i].word) == 0) {
            return words[i].level;
        }
    }

    return -1;
}


const char *
relay_log_level_name(int level)
{
    if (level <= RELAY_LOG_ALERT + 1) {
        return "alert";
    }
    switch (level) {
    case RELAY_LOG_ERR:
        return "err";
    case RELAY_LOG_WARN:
        return "warn";
    case RELAY_LOG_NOTICE:
        return "notice";
    case RELAY_LOG_INFO:
        return "info";
    default:
        return "debug";
    }
}


int
relay_log_key_allowed(const char *key)
{
    size_t i;

    if (key == NULL) {
        return 0;
    }

    for (i = 0; relay_log_keys[i] != NULL; i++) {
        if (strcmp(key, relay_log_keys[i]) == 0) {
            return 1;
        }
    }

    return 0;
}


/* Append s[0..n) whole, or nothing and mark the line cut. */
static int
relay_log_put(struct relay_log_line *line, const char *s, size_t n)
{
    if (line->cut || n > line->cap - line->len) {
        line->cut = 1;
        return -1;
    }

    memcpy(line->buf + line->len, s, n);
    line->len += n;

    return 0;
}


static int
relay_log_needs_quotes(const unsigned char *v)
{
    if (*v == '\0') {
        return 1;
    }

    for (; *v != '\0'; v++) {
        if (*v < 0x21 || *v > 0x7e || *v == '"' || *v == '=') {
            return 1;
        }
    }

    return 0;
}


/*
 * Append a value, quoted and escaped if it needs it.  A value too long for
 * the line is cut at a byte boundary of its escaped form, so what is
 * written still parses, and the line is marked cut.
 */
static void
relay_log_put_value(struct relay_log_line *line, const char *value)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *v;
    char esc[4];
    size_t n;

    v = (const unsigned char *) (value != NULL ? value : "");

    if (!relay_log_needs_quotes(v)) {
        n = strlen((const char *) v);
        if (n > line->cap - line->len) {
            n = line->cap - line->len;
            line->cut = 1;
        }
        memcpy(line->buf + line->len, v, n);
        line->len += n;
        return;
    }

    /* Both quotes must fit, or the value is not started at all. */
    if (line->cap - line->len < 2) {
        line->cut = 1;
        return;
    }
    line->buf[line->len++] = '"';

    for (; *v != '\0'; v++) {
        if (*v == '"' || *v == '\\') {
            esc[0] = '\\';
            esc[1] = (char) *v;
            n = 2;
        } else if (*v < 0x20 || *v > 0x7e) {
            esc[0] = '\\';
            esc[1] = 'x';
            esc[2] = hex[*v >> 4];
            esc[3] = hex[*v & 0x0f];
            n = 4;
        } else {
            esc[0] = (char) *v;
            n = 1;
        }

        /* Keep one byte for the closing quote. */
        if (n + 1 > line->cap - line->len) {
            line->cut = 1;
            break;
        }
        memcpy(line->buf + line->len, esc, n);
        line->len += n;
    }

    line->buf[line->len++] = '"';
}


static void
relay_log_put_pair(struct relay_log_line *line, const char *key,
                   const char *value)
{
    if (line->cut) {
        return;
    }

    /* The key, '=' and at least an empty quoted value, or no pair at all. */
    if (strlen(key) + 4 > line->cap - line->len) {
        line->cut = 1;
        return;
    }

    relay_log_put(line, " ", 1);
    relay_log_put(line, key, strlen(key));
    relay_log_put(line, "=", 1);
    relay_log_put_value(line, value);
}


static void
relay_log_put_time(struct relay_log_line *line)
{
    struct timespec ts;
    struct tm tm;
    int n;

    if (clock_gettime(CLOCK_REALTIME, &ts) == -1
        || gmtime_r(&ts.tv_sec, &tm) == NULL) {
        memset(&tm, 0, sizeof(tm));
        ts.tv_nsec = 0;
    }

    n = snprintf(line->buf + line->len, line->cap - line->len,
                 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 ts.tv_nsec / 1000000L);
    if (n > 0) {
        line->len += (size_t) n;
    }
}


void
relay_log(int level, const char *event, ...)
{
    struct relay_log_line line;
    const char *key;
    const char *value;
    const char *word;
    char num[24];
    int saved_errno;
    int had_pid;
    int had_worker;
    va_list ap;
    ssize_t w;

    if (level > relay_log_state.level) {
        return;
    }

    saved_errno = errno;
    line.len = 0;
    line.cap = sizeof(line.buf) - RELAY_LOG_TRAILER_MAX;
    line.cut = 0;
    had_pid = 0;
    had_worker = 0;

    relay_log_put_time(&line);
    word = relay_log_level_name(level);
    relay_log_put(&line, " ", 1);
    relay_log_put(&line, word, strlen(word));
    relay_log_put_pair(&line, "event", event);

    va_start(ap, event);
    for (;;) {
        key = va_arg(ap, const char *);
        if (key == NULL) {
            break;
        }
        value = va_arg(ap, const char *);
        if (!relay_log_key_allowed(key)) {
            continue;
        }
        if (strcmp(key, "pid") == 0) {
            had_pid = 1;
        } else if (strcmp(key, "worker") == 0) {
            had_worker = 1;
        }
        relay_log_put_pair(&line, key, value);
    }
    va_end(ap);

    /* The trailer has its own reserved room, past cap. */
    line.cap = sizeof(line.buf);
    line.cut = 0;
    if (!had_pid) {
        snprintf(num, sizeof(num), "%ld", (long) getpid());
        relay_log_put_pair(&line, "pid", num);
    }
    if (!had_worker && relay_log_state.worker >= 0) {
        snprintf(num, sizeof(num), "%d", relay_log_state.worker);
        relay_log_put_pair(&line, "worker", num);
    }
    relay_log_put(&line, "\n", 1);

    /*
     * One write, retried only when nothing was written: a short write to
     * an O_APPEND file or pipe is not retried, since its tail would land
     * after another process's line.
     */
    do {
        w = write(relay_log_state.fd, line.buf, line.len);
    } while (w == -1 && errno == EINTR);

    errno = saved_errno;
}
