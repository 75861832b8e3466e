/*
 * log.h: one key=value line per event, written with a single write(2).
 *
 * Every line looks like
 *
 *   2026-12-03T17:51:09.123Z info event=server_claimed server_id=a pid=42
 *
 * A time stamp (UTC, milliseconds), the level word (alert, err, warn,
 * notice, info, debug), then event=<name> first and the caller's key=value
 * pairs in the order given, then pid=<pid> and, in a worker,
 * worker=<slot>.  Values that are empty or contain a space, a quote, '='
 * or a byte outside 0x21..0x7e are written in double quotes with '"' and
 * '\\' escaped and other bytes outside 0x20..0x7e as \xNN, so a line never
 * holds a raw control byte or newline.  Unquoted values are literal.
 *
 * Lines are at most RELAY_LOG_LINE_MAX bytes including the newline: when
 * the pairs do not fit, the value that overflows is cut (never inside an
 * escape, and a quoted value keeps its closing quote), the pairs after it
 * are dropped, and pid= and worker= are still written.  The target is
 * opened O_APPEND, so lines from the master and every worker never
 * interleave.  The module never allocates; it keeps errno unchanged.
 * Not async-signal-safe: never call it from a signal handler.
 *
 * Only the keys of SPEC.md section 12.2 may be used; relay_log_key_allowed()
 * is the list.  Anything else an event needs to say goes in err, as text:
 * a lifecycle line writes
 *
 *   ... notice event=worker_exited worker=2 pid=4242 err="killed by signal 9"
 *
 * and never a signal= or status= key.  A caller that passes worker= or
 * pid= itself names the subject of the event (the worker that exited, the
 * worker a handoff failed to reach); the automatic pair of the same key is
 * then left out, so no key appears twice in a line.
 *
 * Call-site convention, checked by a unit test that reads every .c file in
 * src/: relay_log() is called by that name, the keys are string literals
 * written in the call itself (never variables, macros or wrappers), and the
 * list ends with NULL.  So grepping for "relay_log(" shows every key the
 * relay can emit.
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
 * target and level are kept).
 */
int relay_log_open(const char *path, int level);

/*
 * Reopen the current log file by name (after logrotate moved it).  The
 * descriptor number stays the same, so nothing else needs to learn of it.
 * Returns 0, or -1 with errno set; the old file is kept on failure.
 * A no-op returning 0 when logging to stderr.
 */
int relay_log_reopen(void);

void relay_log_set_level(int level);
int relay_log_get_level(void);

/*
 * The descriptor lines are written to: 2 for stderr, else the log file
 * (close-on-exec).  For a master that wants stray stderr output, such as a
 * sanitizer report, to land in the log file too.
 */
int relay_log_get_fd(void);

/* Called once in each worker after fork; -1 means "the master". */
void relay_log_set_worker(int slot);

/*
 * Parse "alert", "err"/"error", "warn"/"warning", "notice", "info",
 * "debug", in any case.  Returns the level, or -1 for an unknown word.
 */
int relay_log_level_parse(const char *word);

/*
 * The word a line at level is written with.  Levels between the named
 * ones round towards alert (2, syslog's crit, is "alert"); below 1 is
 * "alert", above 7 is "debug".
 */
const char *relay_log_level_name(int level);

/* Return 1 if key is one of SPEC.md's allowed log keys, 0 otherwise. */
int relay_log_key_allowed(const char *key);

/*
 * Log one event.  The variadic part is key, value pairs of const char *,
 * ended by a NULL key; a NULL value is written as "".  Keys that are not
 * allowed are dropped with their value (and the unit test fails on them).
 */
void relay_log(int level, const char *event, ...);

#endif
