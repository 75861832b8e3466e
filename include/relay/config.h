/*
 * config.h: the relay's settings, from defaults, a config file and flags.
 *
 * Flags and config-file keys share names: "--ping-interval 5s" on the
 * command line is "ping-interval = 5s" in the file.  Precedence: defaults,
 * then the file named by --config, then the other command-line flags.
 * Parsing never logs; errors come back as one line of text that names the
 * flag or file:line at fault, and the caller exits 2 with it.  Values the
 * operator typed are echoed in double quotes with control bytes escaped,
 * so an error is always one line.
 *
 * The TLS flags, --domain and --proxy-protocol are refused, as flags and
 * as file keys, with "--tls-listen: not supported in this build".
 *
 * Not checked here, because they depend on the running system: root under
 * PYRYCODE_RELAY_PRODUCTION=1, that --user exists, that max_connections
 * fits the file-descriptor limit.  The master checks those at start.
 */

#ifndef RELAY_CONFIG_H
#define RELAY_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define RELAY_ADDR_TEXT_MAX 128

/* An err buffer this large holds any message the parser writes. */
#define RELAY_CONFIG_ERR_MAX 512

#define RELAY_CONFIG_WORKERS_MAX 1024
#define RELAY_CONFIG_MAX_SERVERS_MAX 16777216

/*
 * A parsed "host:port" listen address.  ss is AF_INET or AF_INET6 with the
 * port set; an empty host is 0.0.0.0 (every IPv4 address, as in HAProxy);
 * "[::]:port" is the IPv6 wildcard.
 */
struct relay_addr {
    int set;                        /* 0: no listener */
    char text[RELAY_ADDR_TEXT_MAX]; /* as the operator wrote it */
    struct sockaddr_storage ss;
    socklen_t len;
};

struct relay_config {
    struct relay_addr insecure_listen;  /* default 127.0.0.1:8080 */
    struct relay_addr metrics_listen;   /* default 127.0.0.1:9090; set 0:
                                           disabled; always loopback */
    long max_connections;               /* 0 ("auto"): 100000 lowered to
                                           the fd limit; else 1..INT_MAX */
    int max_connections_explicit;       /* 1 if a number was set by flag
                                           or file; "auto" clears it */
    long max_servers;                   /* registry capacity, 65536 */
    int trust_xff;                      /* --trust-x-forwarded-for */
    int workers;                        /* 0 ("auto"): online CPUs */
    uint32_t grace_ms;                  /* 30000 */
    uint32_t ping_interval_ms;          /* 30000 */
    uint32_t ping_timeout_ms;           /* 30000 */
    uint32_t probe_ms;                  /* 10000, --conflict-probe-timeout */
    uint32_t drain_ms;                  /* 10000, --drain-timeout */
    uint32_t reload_drain_ms;           /* 300000, --reload-drain-timeout:
                                           how long retired workers keep
                                           their connections after SIGHUP */
    char user[64];                      /* "" : keep the current user */
    char pid_file[PATH_MAX];            /* "" : write no pid file */
    char log_file[PATH_MAX];            /* "" : stderr */
    int log_level;                      /* RELAY_LOG_INFO */
    char config_file[PATH_MAX];         /* "" : no --config given */
    int check_only;                     /* -t / --check-config */
    int production;                     /* PYRYCODE_RELAY_PRODUCTION=1 */
    int fcm_configured;                 /* FCM credentials env set */
};

enum relay_config_result {
    RELAY_CONFIG_OK = 0,      /* run with cfg */
    RELAY_CONFIG_EXIT = 1,    /* --help or --version printed; exit 0 */
    RELAY_CONFIG_ERROR = 2    /* err holds one line; exit 2 */
};

/* Fill cfg with the built-in defaults. */
void relay_config_defaults(struct relay_config *cfg);

/*
 * Apply argv (and the --config file it names, and the environment
 * variables of SPEC.md section 13) on top of cfg, then validate.
 * --help and --version print to stdout and return RELAY_CONFIG_EXIT.
 * On RELAY_CONFIG_ERROR err holds one line without a trailing newline
 * (make it RELAY_CONFIG_ERR_MAX bytes).  argv is not permuted and getopt
 * is restarted, so a reload may call this again on fresh defaults with the
 * same argv.  Operands (non-option arguments) are an error.
 */
int relay_config_parse_args(struct relay_config *cfg, int argc, char **argv,
                            char *err, size_t errlen);

/*
 * Load "key = value" lines from path on top of cfg.  Blank lines and lines
 * whose first non-blank is '#' are skipped; a '#' after a blank ends the
 * value.  A value in double quotes is taken as is, so metrics-listen = ""
 * disables metrics.  Keys are the long flag names; config, check-config,
 * version and help are command-line only.  A later line overrides an
 * earlier one.  Returns RELAY_CONFIG_OK or RELAY_CONFIG_ERROR with err
 * naming "path:line"; cfg may then be partly updated.
 */
int relay_config_load_file(struct relay_config *cfg, const char *path,
                           char *err, size_t errlen);

/*
 * Parse "host:port": an IPv4 literal, "[v6]", or an empty host meaning
 * all addresses; port 1..65535.  Returns 0, or -1 with err filled with
 * the quoted text and the reason, e.g. "\"foo\": not host:port with an
 * IP literal host"; the caller puts the flag name in front.
 */
int relay_config_parse_addr(const char *text, struct relay_addr *addr,
                            char *err, size_t errlen);

/*
 * Parse a duration: digits followed by "ms" or "s" (bare digits are
 * seconds), above zero and at most UINT32_MAX milliseconds.  Returns 0
 * and stores milliseconds, or -1.
 */
int relay_config_parse_duration(const char *text, uint32_t *ms);

/*
 * The checks that need every setting at once: under
 * PYRYCODE_RELAY_PRODUCTION=1 the insecure listener must be a loopback or
 * private address.  relay_config_parse_args() ends with it.  Returns
 * RELAY_CONFIG_OK or RELAY_CONFIG_ERROR with err filled.
 */
int relay_config_validate(const struct relay_config *cfg, char *err,
                          size_t errlen);

/*
 * Return 1 if addr is a loopback IP literal (127/8, ::1, or 127/8 mapped
 * into IPv6), else 0.
 */
int relay_config_addr_is_loopback(const struct relay_addr *addr);

/*
 * Return 1 if addr is loopback or private: 10/8, 172.16/12, 192.168/16
 * (RFC 1918, also IPv4-mapped) or fc00::/7 (ULA, RFC 4193); else 0.
 * Wildcards ("", 0.0.0.0, [::]) are not private.
 */
int relay_config_addr_is_private(const struct relay_addr *addr);

/* Print the --help text to stdout: every flag with its default. */
void relay_config_usage(void);

#endif
