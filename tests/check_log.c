/*
 * check_log.c: the log suite, line format, levels, reopen and the keys.
 *
 * Tests log into a file in a fresh temporary directory and read it back;
 * the time stamp is checked for shape and then cut off, so the rest of a
 * line can be compared exactly.  The last test reads every .c file under
 * RELAY_SRCDIR/src and checks that each relay_log() call site follows the
 * convention of log.h: literal keys from the allowed list, NULL at the end.
 */

#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "relay/log.h"
#include "suites.h"

/* "2026-12-03T17:51:09.123Z " */
#define RELAY_TEST_STAMP_LEN 25

static char relay_test_dir[] = "/tmp/check_log.XXXXXX";
static char relay_test_path[256];
static char relay_test_pid[32];


static void
relay_test_setup(void)
{
    strcpy(relay_test_dir, "/tmp/check_log.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(relay_test_dir));
    snprintf(relay_test_path, sizeof(relay_test_path), "%s/relay.log",
             relay_test_dir);
    snprintf(relay_test_pid, sizeof(relay_test_pid), "pid=%ld",
             (long) getpid());
    relay_log_set_worker(-1);
    ck_assert_int_eq(relay_log_open(relay_test_path, RELAY_LOG_DEBUG), 0);
}


static void
relay_test_teardown(void)
{
    char cmd[128];

    ck_assert_int_eq(relay_log_open(NULL, RELAY_LOG_INFO), 0);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", relay_test_dir);
    ck_assert_int_eq(system(cmd), 0);
}


/* Whole contents of path, NUL-terminated; the caller frees it. */
static char *
relay_test_slurp(const char *path)
{
    struct stat st;
    char *buf;
    ssize_t n;
    int fd;

    fd = open(path, O_RDONLY);
    ck_assert_msg(fd != -1, "%s: %s", path, strerror(errno));
    ck_assert_int_eq(fstat(fd, &st), 0);
    buf = malloc((size_t) st.st_size + 1);
    ck_assert_ptr_nonnull(buf);
    n = read(fd, buf, (size_t) st.st_size);
    ck_assert_int_eq(n, st.st_size);
    buf[n] = '\0';
    close(fd);

    return buf;
}


static int
relay_test_stamp_ok(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ ";
    size_t i;

    for (i = 0; shape[i] != '\0'; i++) {
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i]) {
            return 0;
        }
    }

    return 1;
}


/*
 * The log file's only line, without its time stamp and newline.  Fails if
 * there is not exactly one line or the stamp is malformed.
 */
static char *
relay_test_one_line(void)
{
    static char line[RELAY_LOG_LINE_MAX + 1];
    char *buf;
    size_t n;

    buf = relay_test_slurp(relay_test_path);
    n = strlen(buf);
    ck_assert_msg(n > RELAY_TEST_STAMP_LEN && buf[n - 1] == '\n',
                  "not one line: \"%s\"", buf);
    ck_assert_msg(strchr(buf, '\n') == buf + n - 1, "more than one line: %s",
                  buf);
    ck_assert_msg(relay_test_stamp_ok(buf), "bad time stamp: %s", buf);
    ck_assert_uint_le(n, RELAY_LOG_LINE_MAX);

    buf[n - 1] = '\0';
    snprintf(line, sizeof(line), "%s", buf + RELAY_TEST_STAMP_LEN);
    free(buf);
    ck_assert_int_eq(truncate(relay_test_path, 0), 0);

    return line;
}


/* Assert the only line equals want followed by " pid=<our pid>". */
static void
relay_test_expect(const char *want)
{
    char full[RELAY_LOG_LINE_MAX];

    snprintf(full, sizeof(full), "%s %s", want, relay_test_pid);
    ck_assert_str_eq(relay_test_one_line(), full);
}


/* ------------------------------------------------------------- format */

START_TEST(test_log_line_has_level_event_pairs_and_pid)
{
    relay_log(RELAY_LOG_INFO, "server_claimed", "server_id", "abc",
              "binary_version", "1.2.3", "remote", "192.0.2.1", NULL);
    relay_test_expect("info event=server_claimed server_id=abc "
                      "binary_version=1.2.3 remote=192.0.2.1");
}
END_TEST


START_TEST(test_log_time_stamp_is_utc_now)
{
    struct tm tm;
    time_t before;
    time_t after;
    time_t t;
    char *buf;

    before = time(NULL);
    relay_log(RELAY_LOG_INFO, "x", NULL);
    after = time(NULL);

    buf = relay_test_slurp(relay_test_path);
    ck_assert(relay_test_stamp_ok(buf));
    memset(&tm, 0, sizeof(tm));
    ck_assert_ptr_nonnull(strptime(buf, "%Y-%m-%dT%H:%M:%S", &tm));
    t = timegm(&tm);
    ck_assert_int_ge(t, before);
    ck_assert_int_le(t, after);
    free(buf);
}
END_TEST


START_TEST(test_log_level_words)
{
    static const struct {
        int level;
        const char *word;
    } cases[] = {
        { RELAY_LOG_ALERT, "alert" },   { RELAY_LOG_ERR, "err" },
        { RELAY_LOG_WARN, "warn" },     { RELAY_LOG_NOTICE, "notice" },
        { RELAY_LOG_INFO, "info" },     { RELAY_LOG_DEBUG, "debug" },
    };
    char want[64];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        relay_log(cases[i].level, "e", NULL);
        snprintf(want, sizeof(want), "%s event=e", cases[i].word);
        relay_test_expect(want);
    }

    ck_assert_str_eq(relay_log_level_name(0), "alert");
    ck_assert_str_eq(relay_log_level_name(2), "alert");
    ck_assert_str_eq(relay_log_level_name(9), "debug");
}
END_TEST


START_TEST(test_log_worker_slot_follows_pid)
{
    char want[128];

    relay_log_set_worker(3);
    relay_log(RELAY_LOG_INFO, "phone_registered", "conn_id", "c1", NULL);
    snprintf(want, sizeof(want), "info event=phone_registered conn_id=c1 %s "
             "worker=3", relay_test_pid);
    ck_assert_str_eq(relay_test_one_line(), want);
}
END_TEST


START_TEST(test_log_caller_pid_and_worker_replace_the_automatic_ones)
{
    relay_log_set_worker(0);
    relay_log(RELAY_LOG_NOTICE, "worker_exited", "worker", "2", "pid",
              "4242", "err", "killed by signal 9", NULL);
    ck_assert_str_eq(relay_test_one_line(),
                     "notice event=worker_exited worker=2 pid=4242 "
                     "err=\"killed by signal 9\"");
}
END_TEST


START_TEST(test_log_values_are_quoted_when_needed)
{
    static const struct {
        const char *value;
        const char *written;
    } cases[] = {
        { "plain", "plain" },
        { "a\\b", "a\\b" },
        { "", "\"\"" },
        { "two words", "\"two words\"" },
        { "a=b", "\"a=b\"" },
        { "say \"hi\"", "\"say \\\"hi\\\"\"" },
        { "back\\slash here", "\"back\\\\slash here\"" },
        { "line\nbreak", "\"line\\x0abreak\"" },
        { "tab\there", "\"tab\\x09here\"" },
        { "\x7f", "\"\\x7f\"" },
        { "caf\xc3\xa9", "\"caf\\xc3\\xa9\"" },
        { "\"", "\"\\\"\"" },
    };
    char want[256];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        relay_log(RELAY_LOG_INFO, "e", "err", cases[i].value, NULL);
        snprintf(want, sizeof(want), "info event=e err=%s",
                 cases[i].written);
        relay_test_expect(want);
    }
}
END_TEST


START_TEST(test_log_null_value_is_written_empty)
{
    relay_log(RELAY_LOG_INFO, "e", "path", NULL, "err", "x", NULL);
    relay_test_expect("info event=e path=\"\" err=x");
}
END_TEST


START_TEST(test_log_event_name_is_quoted_like_a_value)
{
    relay_log(RELAY_LOG_INFO, "bad event", NULL);
    relay_test_expect("info event=\"bad event\"");
}
END_TEST


START_TEST(test_log_disallowed_keys_are_dropped_with_their_value)
{
    relay_log(RELAY_LOG_INFO, "e", "token", "secret", "server_id", "s",
              "user_agent", "curl", NULL);
    relay_test_expect("info event=e server_id=s");
}
END_TEST


START_TEST(test_log_allowed_keys_are_exactly_the_spec_list)
{
    static const char *const allowed[] = {
        "server_id", "conn_id", "binary_conn_id", "device_name", "remote",
        "binary_version", "err", "path", "close_code", "token_fp",
        "duration", "worker", "pid"
    };
    static const char *const refused[] = {
        "token", "frame", "payload", "user_agent", "signal", "status", "",
        "Server_id", "server_id ", "event"
    };
    size_t i;

    for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        ck_assert_msg(relay_log_key_allowed(allowed[i]), "%s", allowed[i]);
    }
    for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        ck_assert_msg(!relay_log_key_allowed(refused[i]), "%s", refused[i]);
    }
    ck_assert_int_eq(relay_log_key_allowed(NULL), 0);
}
END_TEST


START_TEST(test_log_keeps_errno)
{
    errno = EPIPE;
    relay_log(RELAY_LOG_INFO, "e", NULL);
    ck_assert_int_eq(errno, EPIPE);
}
END_TEST


/* -------------------------------------------------------------- limits */

START_TEST(test_log_long_value_is_cut_and_line_stays_whole)
{
    char *big;
    char *line;
    size_t n;

    n = 3 * RELAY_LOG_LINE_MAX;
    big = malloc(n + 1);
    ck_assert_ptr_nonnull(big);
    memset(big, 'a', n);
    big[n] = '\0';

    relay_log_set_worker(7);
    relay_log(RELAY_LOG_INFO, "e", "err", big, "path", "/after", NULL);
    line = relay_test_one_line();

    ck_assert_ptr_nonnull(strstr(line, "info event=e err=aaaa"));
    ck_assert_ptr_null(strstr(line, "path="));
    ck_assert_ptr_nonnull(strstr(line, relay_test_pid));
    n = strlen(line);
    ck_assert_str_eq(line + n - 9, " worker=7");
    ck_assert_uint_gt(n, RELAY_LOG_LINE_MAX - 100);
    free(big);
}
END_TEST


START_TEST(test_log_long_quoted_value_keeps_its_closing_quote)
{
    char big[3 * RELAY_LOG_LINE_MAX];
    char *line;
    char *p;
    char *end;

    memset(big, '\n', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';

    relay_log(RELAY_LOG_INFO, "e", "err", big, NULL);
    line = relay_test_one_line();

    p = strstr(line, "err=\"");
    ck_assert_ptr_nonnull(p);
    end = strstr(line, "\" pid=");
    ck_assert_ptr_nonnull(end);
    /* Only whole \x0a escapes between the quotes. */
    ck_assert_int_eq((end - (p + 5)) % 4, 0);
    for (p += 5; p < end; p += 4) {
        ck_assert_int_eq(strncmp(p, "\\x0a", 4), 0);
    }
}
END_TEST


START_TEST(test_log_many_pairs_are_cut_between_pairs)
{
    char value[200];
    char *line;
    char *nl;
    int i;

    memset(value, 'v', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';

    for (i = 0; i < 3; i++) {
        relay_log(RELAY_LOG_INFO, "e", "err", value, "path", value, "remote",
                  value, "server_id", value, "conn_id", value, "device_name",
                  value, "binary_version", value, "close_code", value,
                  "duration", value, "token_fp", value, "binary_conn_id",
                  value, NULL);
    }
    line = relay_test_slurp(relay_test_path);
    ck_assert_int_eq(truncate(relay_test_path, 0), 0);

    /* Three lines, each at most the limit, each ending in pid=. */
    for (i = 0; i < 3; i++) {
        nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        ck_assert_int_le(nl - line + 1, RELAY_LOG_LINE_MAX);
        ck_assert_int_eq(strncmp(nl - strlen(relay_test_pid),
                                 relay_test_pid, strlen(relay_test_pid)),
                         0);
        memmove(line, nl + 1, strlen(nl + 1) + 1);
    }
    ck_assert_str_eq(line, "");
    free(line);
}
END_TEST


/* -------------------------------------------------------------- levels */

START_TEST(test_log_lines_above_the_level_are_dropped)
{
    struct stat st;

    relay_log_set_level(RELAY_LOG_INFO);
    ck_assert_int_eq(relay_log_get_level(), RELAY_LOG_INFO);
    relay_log(RELAY_LOG_DEBUG, "dropped", NULL);
    ck_assert_int_eq(stat(relay_test_path, &st), 0);
    ck_assert_int_eq(st.st_size, 0);

    relay_log(RELAY_LOG_INFO, "kept", NULL);
    relay_test_expect("info event=kept");

    relay_log_set_level(RELAY_LOG_ERR);
    relay_log(RELAY_LOG_WARN, "dropped", NULL);
    relay_log(RELAY_LOG_ALERT, "kept", NULL);
    relay_test_expect("alert event=kept");
}
END_TEST


START_TEST(test_log_level_parse)
{
    static const struct {
        const char *word;
        int level;
    } cases[] = {
        { "alert", RELAY_LOG_ALERT },   { "err", RELAY_LOG_ERR },
        { "error", RELAY_LOG_ERR },     { "warn", RELAY_LOG_WARN },
        { "warning", RELAY_LOG_WARN },  { "notice", RELAY_LOG_NOTICE },
        { "info", RELAY_LOG_INFO },     { "debug", RELAY_LOG_DEBUG },
        { "Info", RELAY_LOG_INFO },     { "crit", -1 },
        { "", -1 },                     { "infos", -1 },
        { "6", -1 },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ck_assert_msg(relay_log_level_parse(cases[i].word) == cases[i].level,
                      "%s", cases[i].word);
    }
    ck_assert_int_eq(relay_log_level_parse(NULL), -1);
}
END_TEST


/* ------------------------------------------------------ files, reopen */

START_TEST(test_log_file_is_created_0640_and_appended)
{
    struct stat st;
    mode_t mask;
    char *buf;
    int fd;

    mask = umask(0);
    umask(mask);
    ck_assert_int_eq(stat(relay_test_path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0640 & ~mask);

    fd = open(relay_test_path, O_WRONLY | O_APPEND);
    ck_assert_int_ne(fd, -1);
    ck_assert_int_eq(write(fd, "old\n", 4), 4);
    close(fd);

    relay_log(RELAY_LOG_INFO, "e", NULL);
    buf = relay_test_slurp(relay_test_path);
    ck_assert_int_eq(strncmp(buf, "old\n", 4), 0);
    ck_assert(relay_test_stamp_ok(buf + 4));
    free(buf);

    ck_assert_int_eq(fcntl(relay_log_get_fd(), F_GETFD) & FD_CLOEXEC,
                     FD_CLOEXEC);
}
END_TEST


START_TEST(test_log_reopen_after_rename_writes_to_the_new_file)
{
    char moved[300];
    char *old;
    int fd;

    snprintf(moved, sizeof(moved), "%s.1", relay_test_path);
    relay_log(RELAY_LOG_INFO, "before", NULL);
    ck_assert_int_eq(rename(relay_test_path, moved), 0);
    relay_log(RELAY_LOG_INFO, "still_old", NULL);

    fd = relay_log_get_fd();
    ck_assert_int_eq(relay_log_reopen(), 0);
    ck_assert_int_eq(relay_log_get_fd(), fd);
    relay_log(RELAY_LOG_INFO, "after", NULL);

    relay_test_expect("info event=after");
    old = relay_test_slurp(moved);
    ck_assert_ptr_nonnull(strstr(old, "event=before"));
    ck_assert_ptr_nonnull(strstr(old, "event=still_old"));
    ck_assert_ptr_null(strstr(old, "event=after"));
    free(old);
}
END_TEST


START_TEST(test_log_reopen_failure_keeps_the_old_file)
{
    char moved[300];
    char *old;

    /* A directory where the file was: open() fails even for root. */
    snprintf(moved, sizeof(moved), "%s/moved.log", relay_test_dir);
    ck_assert_int_eq(rename(relay_test_path, moved), 0);
    ck_assert_int_eq(mkdir(relay_test_path, 0700), 0);

    errno = 0;
    ck_assert_int_eq(relay_log_reopen(), -1);
    ck_assert_int_eq(errno, EISDIR);
    relay_log(RELAY_LOG_INFO, "kept", NULL);

    old = relay_test_slurp(moved);
    ck_assert_ptr_nonnull(strstr(old, "event=kept"));
    free(old);
}
END_TEST


START_TEST(test_log_open_failure_keeps_the_previous_target)
{
    char bad[300];

    snprintf(bad, sizeof(bad), "%s/no/such/dir.log", relay_test_dir);
    errno = 0;
    ck_assert_int_eq(relay_log_open(bad, RELAY_LOG_ERR), -1);
    ck_assert_int_eq(errno, ENOENT);
    ck_assert_int_eq(relay_log_get_level(), RELAY_LOG_DEBUG);

    relay_log(RELAY_LOG_DEBUG, "kept", NULL);
    relay_test_expect("debug event=kept");
}
END_TEST


START_TEST(test_log_stderr_reopen_is_a_no_op)
{
    ck_assert_int_eq(relay_log_open("", RELAY_LOG_INFO), 0);
    ck_assert_int_eq(relay_log_get_fd(), 2);
    ck_assert_int_eq(relay_log_reopen(), 0);
    ck_assert_int_eq(relay_log_get_fd(), 2);
}
END_TEST


START_TEST(test_log_lines_from_many_processes_never_interleave)
{
    char value[1500];
    char *buf;
    char *line;
    char *nl;
    pid_t pids[4];
    int status;
    int count;
    int i;
    int j;

    memset(value, 'x', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';

    for (i = 0; i < 4; i++) {
        pids[i] = fork();
        ck_assert_int_ne(pids[i], -1);
        if (pids[i] == 0) {
            relay_log_set_worker(i);
            for (j = 0; j < 300; j++) {
                relay_log(RELAY_LOG_INFO, "e", "err", value, NULL);
            }
            _exit(0);
        }
    }
    for (i = 0; i < 4; i++) {
        ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }

    buf = relay_test_slurp(relay_test_path);
    count = 0;
    for (line = buf; *line != '\0'; line = nl + 1) {
        nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        *nl = '\0';
        ck_assert(relay_test_stamp_ok(line));
        ck_assert_int_eq(strncmp(line + RELAY_TEST_STAMP_LEN,
                                 "info event=e err=", 17),
                         0);
        ck_assert_int_eq(strncmp(line + RELAY_TEST_STAMP_LEN + 17, value,
                                 strlen(value)),
                         0);
        ck_assert_ptr_nonnull(strstr(line, " worker="));
        count++;
    }
    ck_assert_int_eq(count, 4 * 300);
    free(buf);
}
END_TEST


/* --------------------------------------------------------- call sites */

/*
 * A copy of src with comments blanked (newlines kept, so offsets and line
 * numbers match) and, if blank_strings, the insides of string and char
 * literals blanked too.
 */
static char *
relay_test_blank(const char *src, int blank_strings)
{
    char *out;
    size_t i;
    char q;

    out = strdup(src);
    ck_assert_ptr_nonnull(out);

    for (i = 0; out[i] != '\0'; i++) {
        if (out[i] == '/' && out[i + 1] == '*') {
            for (; out[i] != '\0'
                   && !(out[i] == '*' && out[i + 1] == '/');
                 i++) {
                if (out[i] != '\n') {
                    out[i] = ' ';
                }
            }
            if (out[i] == '\0') {
                break;
            }
            out[i] = ' ';
            out[++i] = ' ';
        } else if (out[i] == '/' && out[i + 1] == '/') {
            for (; out[i] != '\0' && out[i] != '\n'; i++) {
                out[i] = ' ';
            }
            if (out[i] == '\0') {
                break;
            }
        } else if (out[i] == '"' || out[i] == '\'') {
            q = out[i];
            for (i++; out[i] != '\0' && out[i] != q && out[i] != '\n'; i++) {
                if (out[i] == '\\' && out[i + 1] != '\0') {
                    if (blank_strings) {
                        out[i] = ' ';
                    }
                    i++;
                }
                if (blank_strings) {
                    out[i] = ' ';
                }
            }
            if (out[i] == '\0') {
                break;
            }
        }
    }

    return out;
}


/*
 * If text[0..len) is one or more adjacent string literals and nothing
 * else, copy their joined contents (escapes left as written) to out and
 * return 1; else return 0.
 */
static int
relay_test_literal(const char *text, size_t len, char *out, size_t outlen)
{
    size_t i;
    size_t n;
    int any;

    n = 0;
    any = 0;
    i = 0;
    for (;;) {
        while (i < len && strchr(" \t\n", text[i]) != NULL) {
            i++;
        }
        if (i == len) {
            break;
        }
        if (text[i] != '"') {
            return 0;
        }
        for (i++; i < len && text[i] != '"'; i++) {
            if (text[i] == '\\' && i + 1 < len) {
                if (n + 1 < outlen) {
                    out[n++] = text[i];
                }
                i++;
            }
            if (n + 1 < outlen) {
                out[n++] = text[i];
            }
        }
        if (i == len) {
            return 0;
        }
        i++;
        any = 1;
    }
    out[n] = '\0';

    return any;
}


static void
relay_test_report(char *report, size_t cap, const char *fmt, ...)
{
    size_t n;
    va_list ap;

    n = strlen(report);
    if (n + 1 >= cap) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(report + n, cap - n, fmt, ap);
    va_end(ap);
}


/*
 * Check every relay_log( call in one file's text against the convention
 * of log.h.  Definitions (the name at column 0) are skipped.  Problems are
 * appended to report, one per line; returns how many there were and adds
 * the number of calls seen to *calls.
 */
static int
relay_test_scan_calls(const char *file, const char *src, char *report,
                      size_t cap, int *calls)
{
    static const char name[] = "relay_log(";
    const char *arg[64];
    size_t arglen[64];
    char key[128];
    char *code;
    char *text;
    const char *p;
    const char *q;
    const char *s;
    size_t nargs;
    size_t n;
    size_t i;
    int depth;
    int line;
    int bad;

    code = relay_test_blank(src, 1);
    text = relay_test_blank(src, 0);
    bad = 0;

    for (p = strstr(code, name); p != NULL; p = strstr(p + 1, name)) {
        if (p == code || p[-1] == '\n') {
            continue;
        }
        if (p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z')
            || (p[-1] >= 'A' && p[-1] <= 'Z')
            || (p[-1] >= '0' && p[-1] <= '9')) {
            continue;
        }

        line = 1;
        for (s = code; s < p; s++) {
            line += *s == '\n';
        }
        (*calls)++;

        /* Split the arguments at top-level commas, on the blanked copy. */
        nargs = 0;
        depth = 0;
        s = p + sizeof(name) - 1;
        for (q = s; *q != '\0'; q++) {
            if (*q == '(' || *q == '[' || *q == '{') {
                depth++;
            } else if ((*q == ')' || *q == ']' || *q == '}') && depth > 0) {
                depth--;
            } else if ((*q == ',' || *q == ')') && depth == 0) {
                if (nargs < 64) {
                    arg[nargs] = text + (s - code);
                    arglen[nargs] = (size_t) (q - s);
                    nargs++;
                }
                s = q + 1;
                if (*q == ')') {
                    break;
                }
            }
        }

        if (nargs < 3 || (nargs - 3) % 2 != 0) {
            relay_test_report(report, cap,
                              "%s:%d: relay_log() needs level, event, "
                              "key/value pairs and NULL\n",
                              file, line);
            bad++;
            continue;
        }
        s = arg[nargs - 1];
        n = arglen[nargs - 1];
        while (n > 0 && strchr(" \t\n", *s) != NULL) {
            s++;
            n--;
        }
        while (n > 0 && strchr(" \t\n", s[n - 1]) != NULL) {
            n--;
        }
        if (n != 4 || strncmp(s, "NULL", 4) != 0) {
            relay_test_report(report, cap,
                              "%s:%d: relay_log() does not end with NULL\n",
                              file, line);
            bad++;
        }
        for (i = 2; i + 1 < nargs; i += 2) {
            if (!relay_test_literal(arg[i], arglen[i], key, sizeof(key))) {
                for (n = 0; n < arglen[i] && arg[i][n] == ' '; n++) {
                }
                relay_test_report(report, cap,
                                  "%s:%d: relay_log() key %zu is not a "
                                  "string literal: %.*s\n",
                                  file, line, i / 2, (int) (arglen[i] - n),
                                  arg[i] + n);
                bad++;
            } else if (!relay_log_key_allowed(key)) {
                relay_test_report(report, cap,
                                  "%s:%d: relay_log() key \"%s\" is not "
                                  "allowed\n",
                                  file, line, key);
                bad++;
            }
        }
    }

    free(text);
    free(code);

    return bad;
}


START_TEST(test_log_call_site_checker_catches_bad_calls)
{
    static const char good[] =
        "/* relay_log(RELAY_LOG_INFO, \"x\", \"token\", t, NULL); */\n"
        "void\n"
        "relay_log(int level, const char *event, ...)\n"
        "{\n"
        "    relay_log_open(\"x\", 1);\n"
        "    puts(\"relay_log(1, \\\"e\\\", \\\"bad\\\", v, NULL)\");\n"
        "    relay_log(RELAY_LOG_INFO, \"server_claimed\", \"server_id\",\n"
        "              id, \"remote\", f(a, \"b,c\"), \"err\" \"\", e, NULL);\n"
        "    relay_log(RELAY_LOG_INFO, \"e\", NULL);  // relay_log(\n"
        "}\n";
    static const char bad[] =
        "    relay_log(RELAY_LOG_INFO, \"e\", \"token\", t, NULL);\n"
        "    relay_log(RELAY_LOG_INFO, \"e\", key, t, NULL);\n"
        "    relay_log(RELAY_LOG_INFO, \"e\", \"err\", t);\n"
        "    relay_log(RELAY_LOG_INFO, \"e\", \"err\", t, \"pid\");\n";
    char report[4096];
    int calls;

    report[0] = '\0';
    calls = 0;
    ck_assert_int_eq(relay_test_scan_calls("good.c", good, report,
                                           sizeof(report), &calls),
                     0);
    ck_assert_msg(calls == 2, "%d calls: %s", calls, report);

    calls = 0;
    ck_assert_int_eq(relay_test_scan_calls("bad.c", bad, report,
                                           sizeof(report), &calls),
                     4);
    ck_assert_int_eq(calls, 4);
    ck_assert_ptr_nonnull(strstr(report, "bad.c:1: relay_log() key "
                                         "\"token\" is not allowed"));
    ck_assert_ptr_nonnull(strstr(report, "bad.c:2: relay_log() key 1 is "
                                         "not a string literal: key"));
    ck_assert_ptr_nonnull(strstr(report, "bad.c:3:"));
    ck_assert_ptr_nonnull(strstr(report, "bad.c:4: relay_log() does not "
                                         "end with NULL"));
}
END_TEST


/* The source tree: RELAY_SRCDIR, else . or .. if they hold src/log.c. */
static const char *
relay_test_srcdir(void)
{
    const char *dir;

    dir = getenv("RELAY_SRCDIR");
    if (dir != NULL && dir[0] != '\0') {
        return dir;
    }
    if (access("src/log.c", R_OK) == 0) {
        return ".";
    }
    if (access("../src/log.c", R_OK) == 0) {
        return "..";
    }

    return NULL;
}


START_TEST(test_log_every_call_site_uses_allowed_literal_keys)
{
    static char report[16384];
    const char *srcdir;
    struct dirent *de;
    char path[4096];
    char *src;
    DIR *d;
    size_t n;
    int files;
    int calls;
    int bad;

    srcdir = relay_test_srcdir();
    if (srcdir == NULL) {
        fprintf(stderr, "check_log: RELAY_SRCDIR unset and no src/ found; "
                        "call-site key check skipped\n");
        return;
    }

    snprintf(path, sizeof(path), "%s/src", srcdir);
    d = opendir(path);
    ck_assert_msg(d != NULL, "%s: %s", path, strerror(errno));

    report[0] = '\0';
    files = 0;
    calls = 0;
    bad = 0;
    while ((de = readdir(d)) != NULL) {
        n = strlen(de->d_name);
        if (n < 3 || strcmp(de->d_name + n - 2, ".c") != 0) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/src/%s", srcdir, de->d_name);
        src = relay_test_slurp(path);
        bad += relay_test_scan_calls(de->d_name, src, report, sizeof(report),
                                     &calls);
        free(src);
        files++;
    }
    closedir(d);

    ck_assert_msg(files > 0, "no .c files under %s/src", srcdir);
    ck_assert_msg(bad == 0, "%d bad relay_log() call(s) in %d calls:\n%s",
                  bad, calls, report);
}
END_TEST


Suite *
relay_suite_log(void)
{
    Suite *s;
    TCase *tc;

    s = suite_create("log");

    tc = tcase_create("format");
    tcase_add_checked_fixture(tc, relay_test_setup, relay_test_teardown);
    tcase_add_test(tc, test_log_line_has_level_event_pairs_and_pid);
    tcase_add_test(tc, test_log_time_stamp_is_utc_now);
    tcase_add_test(tc, test_log_level_words);
    tcase_add_test(tc, test_log_worker_slot_follows_pid);
    tcase_add_test(tc,
                   test_log_caller_pid_and_worker_replace_the_automatic_ones);
    tcase_add_test(tc, test_log_values_are_quoted_when_needed);
    tcase_add_test(tc, test_log_null_value_is_written_empty);
    tcase_add_test(tc, test_log_event_name_is_quoted_like_a_value);
    tcase_add_test(tc, test_log_disallowed_keys_are_dropped_with_their_value);
    tcase_add_test(tc, test_log_allowed_keys_are_exactly_the_spec_list);
    tcase_add_test(tc, test_log_keeps_errno);
    suite_add_tcase(s, tc);

    tc = tcase_create("limits");
    tcase_add_checked_fixture(tc, relay_test_setup, relay_test_teardown);
    tcase_add_test(tc, test_log_long_value_is_cut_and_line_stays_whole);
    tcase_add_test(tc, test_log_long_quoted_value_keeps_its_closing_quote);
    tcase_add_test(tc, test_log_many_pairs_are_cut_between_pairs);
    suite_add_tcase(s, tc);

    tc = tcase_create("levels");
    tcase_add_checked_fixture(tc, relay_test_setup, relay_test_teardown);
    tcase_add_test(tc, test_log_lines_above_the_level_are_dropped);
    tcase_add_test(tc, test_log_level_parse);
    suite_add_tcase(s, tc);

    tc = tcase_create("files");
    tcase_add_checked_fixture(tc, relay_test_setup, relay_test_teardown);
    tcase_add_test(tc, test_log_file_is_created_0640_and_appended);
    tcase_add_test(tc, test_log_reopen_after_rename_writes_to_the_new_file);
    tcase_add_test(tc, test_log_reopen_failure_keeps_the_old_file);
    tcase_add_test(tc, test_log_open_failure_keeps_the_previous_target);
    tcase_add_test(tc, test_log_stderr_reopen_is_a_no_op);
    tcase_add_test(tc, test_log_lines_from_many_processes_never_interleave);
    suite_add_tcase(s, tc);

    tc = tcase_create("call sites");
    tcase_add_test(tc, test_log_call_site_checker_catches_bad_calls);
    tcase_add_test(tc, test_log_every_call_site_uses_allowed_literal_keys);
    suite_add_tcase(s, tc);

    return s;
}
