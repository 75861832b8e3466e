/*
 * log.h: one key=value line per event, written with a single write(2).
 *
 * Every line looks like
 *
 *   2026-12-03T17:51:09.123Z info event=server_claimed server_id=a pid=42
 *
 * A time stamp (UTC), the level word, then event=<name> first and the
 * caller's key=value pairs in the order given, then pid=<pid> and, in a
 * worker, worker=<slot>.  Values that are empty or contain a space, a
 * quote, '=' or a byte outside 0x21..0x7e are written in double quotes
 * with '"' and '\\' escaped and other unprintable bytes as \xNN.
 *
 * Lines are at most RELAY_LOG_LINE_MAX bytes (longer values are cut) and
 * the target is opened O_APPEND, so lines from the master and every worker
 * never interleave.  The module never allocates after relay_log_open().
 * Not async-signal-safe: never call it from a signal handler.
 *
 * Only the keys in SPEC.md section 12.2 may be used; relay_log_key_allowed()
 * is the list, and a unit test checks every call site against it.
 */

#ifndef RELAY_LOG_H
#define RELAY_LOG_H

#define RELAY_LOG_LINE_MAX 2048

/* syslog(3) severities, so the numbers mean what an operator expects. */
enum relay_log_level {
    RELAY_LOG_ALERT = 1,
    RELAY_LOG_ERR = 3,
    RELAY_LOG_WARN = 4,
    RELAY_LOG_NOTICE = 5,
    RELAY_LOG_INFO = 6,
    RELAY_LOG_DEBUG = 7
};

/*
 * Send lines to path (opened O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC, 0640), or
 * to stderr when path is NULL or empty.  Lines above level are discarded.
 * Returns 0, or -1 with errno set if the file cannot be opened (the previous
 * target is kept).
 */
int relay_log_open(const char *path, int level);

/*
 * Reopen the current log file by name (after logrotate moved it).
 * Returns 0, or -1 with errno set; the old descriptor is kept on failure.
 * A no-op returning 0 when logging to stderr.
 */
int relay_log_reopen(void);

void relay_log_set_level(int level);
int relay_log_get_level(void);

/* Called once in each worker after fork; -1 means "the master". */
void relay_log_set_worker(int slot);

/*
 * Parse "alert", "err"/"error", "warn"/"warning", "notice", "info",
 * "debug".  Returns the level, or -1 for an unknown word.
 */
int relay_log_level_parse(const char *word);

/* Return 1 if key is one of SPEC.md's allowed log keys, 0 otherwise. */
int relay_log_key_allowed(const char *key);

/*
 * Log one event.  The variadic part is key, value pairs of const char *,
 * ended by a NULL key; a NULL value is written as "".  Keys that are not
 * allowed are dropped (and the unit test fails on them).
 */
void relay_log(int level, const char *event, ...);

#endif
