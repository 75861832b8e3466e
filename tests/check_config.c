/*
 * check_config.c: the config suite, defaults, flags, file and environment.
 *
 * Every test starts from relay_config_defaults() with the two environment
 * variables the parser reads removed, and parses a literal argv the way
 * main() would.  Error tests check the result code and that the one-line
 * message names the flag or file:line at fault.  The documentation tests
 * read doc/ and contrib/ from RELAY_SRCDIR, since --help, the man page and
 * the sample file are promises to the operator too.
 */

#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "relay/config.h"
#include "relay/log.h"
#include "suites.h"

/* Every setting that is both a flag and a file key, with a valid value. */
static const struct {
    const char *name;
    const char *value;
} relay_test_keys[] = {
    { "insecure-listen", "10.0.0.1:80" },
    { "metrics-listen", "127.0.0.2:9100" },
    { "max-connections", "5000" },
    { "max-servers", "1024" },
    { "trust-x-forwarded-for", NULL },
    { "workers", "3" },
    { "grace-period", "1500ms" },
    { "ping-interval", "2s" },
    { "ping-timeout", "3" },
    { "conflict-probe-timeout", "400ms" },
    { "drain-timeout", "7s" },
    { "reload-drain-timeout", "60s" },
    { "user", "relay" },
    { "pid-file", "/run/relay.pid" },
    { "log-file", "/var/log/relay.log" },
    { "log-level", "debug" },
};

static const char *const relay_test_unsupported[] = {
    "tls-listen", "tls-cert", "tls-key", "domain", "proxy-protocol"
};

/* A flag and a value it must refuse, naming the flag. */
static const struct {
    const char *flag;
    const char *value;
} relay_test_bad_values[] = {
    { "--insecure-listen", "foo" },
    { "--insecure-listen", "" },
    { "--insecure-listen", "localhost:8080" },
    { "--metrics-listen", "0.0.0.0:9090" },
    { "--metrics-listen", ":9090" },
    { "--metrics-listen", "10.0.0.1:9090" },
    { "--metrics-listen", "[::]:9090" },
    { "--metrics-listen", "127.0.0.1" },
    { "--max-connections", "0" },
    { "--max-connections", "-5" },
    { "--max-connections", "12k" },
    { "--max-connections", "" },
    { "--max-connections", "99999999999999999999" },
    { "--max-servers", "0" },
    { "--max-servers", "16777217" },
    { "--workers", "0" },
    { "--workers", "1025" },
    { "--workers", "two" },
    { "--workers", " 2" },
    { "--grace-period", "0" },
    { "--grace-period", "5m" },
    { "--ping-interval", "0ms" },
    { "--ping-interval", "s" },
    { "--ping-timeout", "-1s" },
    { "--conflict-probe-timeout", "1.5s" },
    { "--drain-timeout", "" },
    { "--reload-drain-timeout", "0" },
    { "--log-level", "loud" },
    { "--log-level", "" },
    { "--user", "a-user-name-that-is-far-too-long-for-the-sixty-four-"
                "byte-field-of-the-config" },
};

static char relay_test_err[RELAY_CONFIG_ERR_MAX];
static char relay_test_dir[] = "/tmp/check_config.XXXXXX";


static void
relay_test_setup(void)
{
    unsetenv("PYRYCODE_RELAY_PRODUCTION");
    unsetenv("PYRYCODE_RELAY_FCM_CREDENTIALS");
    relay_test_err[0] = '\0';
    strcpy(relay_test_dir, "/tmp/check_config.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(relay_test_dir));
}


static void
relay_test_teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", relay_test_dir);
    ck_assert_int_eq(system(cmd), 0);
}


/* Parse a NULL-terminated argv over fresh defaults. */
static int
relay_test_parse(struct relay_config *cfg, char **argv)
{
    int argc;
    int rc;

    for (argc = 0; argv[argc] != NULL; argc++) {
    }

    relay_config_defaults(cfg);
    relay_test_err[0] = '\0';
    rc = relay_config_parse_args(cfg, argc, argv, relay_test_err,
                                 sizeof(relay_test_err));
    if (rc == RELAY_CONFIG_ERROR) {
        ck_assert_msg(relay_test_err[0] != '\0', "error without a message");
        ck_assert_msg(strchr(relay_test_err, '\n') == NULL,
                      "error is more than one line: %s", relay_test_err);
    }

    return rc;
}

#define RELAY_ARGV(...) ((char *[]){ "pyrycode-relay", __VA_ARGS__, NULL })


/* Write text to a file in the test directory; returns its path. */
static const char *
relay_test_file(const char *name, const char *text)
{
    static char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", relay_test_dir, name);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);

    return path;
}


static int
relay_test_load(struct relay_config *cfg, const char *text)
{
    const char *path;

    path = relay_test_file("relay.conf", text);
    relay_config_defaults(cfg);
    relay_test_err[0] = '\0';

    return relay_config_load_file(cfg, path, relay_test_err,
                                  sizeof(relay_test_err));
}


static void
relay_test_assert_err_has(const char *needle)
{
    ck_assert_msg(strstr(relay_test_err, needle) != NULL,
                  "error \"%s\" does not contain \"%s\"", relay_test_err,
                  needle);
}


static int
relay_test_port(const struct relay_addr *a)
{
    if (a->ss.ss_family == AF_INET) {
        return ntohs(((const struct sockaddr_in *) &a->ss)->sin_port);
    }

    return ntohs(((const struct sockaddr_in6 *) &a->ss)->sin6_port);
}


/* Run fn with stdout sent to a file; returns what it printed. */
static char *
relay_test_capture(void (*fn)(void))
{
    static char out[8192];
    char path[256];
    ssize_t n;
    int saved;
    int fd;

    snprintf(path, sizeof(path), "%s/stdout", relay_test_dir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ne(fd, -1);
    fflush(stdout);
    saved = dup(1);
    ck_assert_int_ne(saved, -1);
    ck_assert_int_ne(dup2(fd, 1), -1);

    fn();

    fflush(stdout);
    ck_assert_int_ne(dup2(saved, 1), -1);
    close(saved);
    n = pread(fd, out, sizeof(out) - 1, 0);
    ck_assert_int_ge(n, 0);
    out[n] = '\0';
    close(fd);

    return out;
}


/* Read srcdir/rel into a NUL-terminated buffer, or NULL. */
static char *
relay_test_read_source(const char *rel)
{
    const char *srcdir;
    char path[4096];
    char *buf;
    FILE *f;
    long n;

    srcdir = getenv("RELAY_SRCDIR");
    if (srcdir == NULL || srcdir[0] == '\0') {
        if (access("doc/pyrycode-relay.8", R_OK) == 0) {
            srcdir = ".";
        } else if (access("../doc/pyrycode-relay.8", R_OK) == 0) {
            srcdir = "..";
        } else {
            return NULL;
        }
    }

    snprintf(path, sizeof(path), "%s/%s", srcdir, rel);
    f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    ck_assert_int_ge(n, 0);
    rewind(f);
    buf = malloc((size_t) n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(fread(buf, 1, (size_t) n, f), (size_t) n);
    buf[n] = '\0';
    fclose(f);

    return buf;
}


/* ------------------------------------------------------------ defaults */

START_TEST(test_config_defaults_are_the_documented_ones)
{
    struct relay_config cfg;

    relay_config_defaults(&cfg);

    ck_assert_int_eq(cfg.insecure_listen.set, 1);
    ck_assert_str_eq(cfg.insecure_listen.text, "127.0.0.1:8080");
    ck_assert_int_eq(cfg.insecure_listen.ss.ss_family, AF_INET);
    ck_assert_int_eq(relay_test_port(&cfg.insecure_listen), 8080);
    ck_assert_int_eq(cfg.metrics_listen.set, 1);
    ck_assert_str_eq(cfg.metrics_listen.text, "127.0.0.1:9090");
    ck_assert_int_eq(relay_test_port(&cfg.metrics_listen), 9090);
    ck_assert_int_eq(cfg.max_connections, 0);
    ck_assert_int_eq(cfg.max_connections_explicit, 0);
    ck_assert_int_eq(cfg.max_servers, 65536);
    ck_assert_int_eq(cfg.trust_xff, 0);
    ck_assert_int_eq(cfg.workers, 0);
    ck_assert_uint_eq(cfg.grace_ms, 30000);
    ck_assert_uint_eq(cfg.ping_interval_ms, 30000);
    ck_assert_uint_eq(cfg.ping_timeout_ms, 30000);
    ck_assert_uint_eq(cfg.probe_ms, 10000);
    ck_assert_uint_eq(cfg.drain_ms, 10000);
    ck_assert_uint_eq(cfg.reload_drain_ms, 300000);
    ck_assert_str_eq(cfg.user, "");
    ck_assert_str_eq(cfg.pid_file, "");
    ck_assert_str_eq(cfg.log_file, "");
    ck_assert_int_eq(cfg.log_level, RELAY_LOG_INFO);
    ck_assert_str_eq(cfg.config_file, "");
    ck_assert_int_eq(cfg.check_only, 0);
    ck_assert_int_eq(cfg.production, 0);
    ck_assert_int_eq(cfg.fcm_configured, 0);
}
END_TEST


START_TEST(test_config_no_arguments_keep_the_defaults)
{
    struct relay_config cfg;
    struct relay_config def;

    ck_assert_int_eq(relay_test_parse(&cfg, (char *[]){ "relay", NULL }),
                     RELAY_CONFIG_OK);
    relay_config_defaults(&def);
    ck_assert_mem_eq(&cfg, &def, sizeof(cfg));
}
END_TEST


/* --------------------------------------------------------------- flags */

START_TEST(test_config_every_flag_is_parsed)
{
    struct relay_config cfg;

    ck_assert_int_eq(
        relay_test_parse(
            &cfg, RELAY_ARGV("--insecure-listen", "10.0.0.1:80",
                             "--metrics-listen", "[::1]:9100",
                             "--max-connections", "5000", "--max-servers",
                             "1024", "--trust-x-forwarded-for", "--workers",
                             "3", "--grace-period", "1500ms",
                             "--ping-interval", "2s", "--ping-timeout", "3",
                             "--conflict-probe-timeout", "400ms",
                             "--drain-timeout", "7s",
                             "--reload-drain-timeout", "60s", "--user",
                             "relay",
                             "--pid-file", "/run/relay.pid", "--log-file",
                             "/var/log/relay.log", "--log-level", "debug",
                             "--check-config")),
        RELAY_CONFIG_OK);

    ck_assert_str_eq(cfg.insecure_listen.text, "10.0.0.1:80");
    ck_assert_int_eq(relay_test_port(&cfg.insecure_listen), 80);
    ck_assert_str_eq(cfg.metrics_listen.text, "[::1]:9100");
    ck_assert_int_eq(cfg.metrics_listen.ss.ss_family, AF_INET6);
    ck_assert_int_eq(relay_test_port(&cfg.metrics_listen), 9100);
    ck_assert_int_eq(cfg.max_connections, 5000);
    ck_assert_int_eq(cfg.max_connections_explicit, 1);
    ck_assert_int_eq(cfg.max_servers, 1024);
    ck_assert_int_eq(cfg.trust_xff, 1);
    ck_assert_int_eq(cfg.workers, 3);
    ck_assert_uint_eq(cfg.grace_ms, 1500);
    ck_assert_uint_eq(cfg.ping_interval_ms, 2000);
    ck_assert_uint_eq(cfg.ping_timeout_ms, 3000);
    ck_assert_uint_eq(cfg.probe_ms, 400);
    ck_assert_uint_eq(cfg.drain_ms, 7000);
    ck_assert_uint_eq(cfg.reload_drain_ms, 60000);
    ck_assert_str_eq(cfg.user, "relay");
    ck_assert_str_eq(cfg.pid_file, "/run/relay.pid");
    ck_assert_str_eq(cfg.log_file, "/var/log/relay.log");
    ck_assert_int_eq(cfg.log_level, RELAY_LOG_DEBUG);
    ck_assert_int_eq(cfg.check_only, 1);
}
END_TEST


START_TEST(test_config_flags_accept_the_equals_form)
{
    struct relay_config cfg;

    ck_assert_int_eq(relay_test_parse(&cfg, RELAY_ARGV("--workers=5",
                                                       "--log-level=warn")),
                     RELAY_CONFIG_OK);
    ck_assert_int_eq(cfg.workers, 5);
    ck_assert_int_eq(cfg.log_level, RELAY_LOG_WARN);
}
END_TEST


START_TEST(test_config_short_t_is_check_config)
{
    struct relay_config cfg;

    ck_assert_int_eq(relay_test_parse(&cfg, RELAY_ARGV("-t")),
                     RELAY_CONFIG_OK);
    ck_assert_int_eq(cfg.check_only, 1);
}
END_TEST


START_TEST(test_config_workers_auto_means_online_cpus)
{
    struct relay_config cfg;

    ck_assert_int_eq(relay_test_parse(&cfg, RELAY_ARGV("--workers", "9",
                                                       "--workers", "auto")),
                     RELAY_CONFIG_OK);
    ck_assert_int_eq(cfg.workers, 0);
}
END_TEST


START_TEST(test_config_workers_limits_are_inclusive)
{
    struct relay_config cfg;

    ck_assert_int_eq(relay_test_parse(&cfg, RELAY_ARGV("--workers", "1")),
                     RELAY_CONFIG_OK);
    ck_assert_int_eq(cfg.workers, 1);
    ck_assert_int_eq(relay_test_parse(&cfg, RELAY_ARGV("--workers", "1024")),
                     RELAY_CONFIG_OK);
    ck_assert_int_eq(cfg.workers, 1024);
}
END_TEST


START_TEST(test_config_empty_metrics_listen_disables_metrics)
{
    struct relay_config cfg;

    ck_assert_int_eq(relay_test_parse(&cfg, RELAY_ARGV("--metrics-listen",
                                                       "")),
                     RELAY_CONFIG_OK);
    ck_assert_int_eq(cfg.metrics_listen.set, 0);
}
END_TEST


START_TEST(test_config_log_level_words)
{
    static const struct {
        const char *word;
        int level;
    } words[] = {
        { "alert", RELAY_LOG_ALERT },   { "err", RELAY_LOG_ERR },
        { "error", RELAY_LOG_ERR },     { "warn", RELAY_LOG_WARN },
        { "warning", RELAY_LOG_WARN },  { "notice", RELAY_LOG_NOTICE },
        { "info", RELAY_LOG_INFO },     { "DEBUG", RELAY_LOG_DEBUG },
    };
    struct relay_config cfg;
    size_t i;

    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        ck_assert_int_eq(relay_test_parse(&cfg,
                                          RELAY_ARGV("--log-level",
                                                     (char *) words[i].word)),
                         RELAY_CONFIG_OK);
        ck_assert_int_eq(cfg.log_level, words[i].level);
    }
}
END_TEST


START_TEST(test_config_bad_value_is_refused_naming_the_flag)
{
    struct relay_config cfg;
    char want[64];

    ck_assert_int_eq(
        relay_test_parse(&cfg,
                         RELAY_ARGV((char *) relay_test_bad_values[_i].flag,
                                    (char *) relay_test_bad_values[_i].value)),
        RELAY_CONFIG_ERROR);

    snprintf(want, sizeof(want), "%s ", relay_test_bad_values[_i].flag);
    ck_assert_msg(strncmp(relay_test_err, want, strlen(want)) == 0,
                  "%s %s: error \"%s\" does not start with the flag",
                  relay_test_bad_values[_i].flag,
                  relay_test_bad_values[_i].value, relay_test_err);
}
END_TEST


START_TEST(test_config_bad_address_message_says_what_is_expected)
{
    struct relay_config cfg;

    ck_assert_int_eq(relay_test_parse(&cfg, RELAY_ARGV("--insecure-listen",
                                                       "foo")),
                     RELAY_CONFIG_ERROR);
    ck_assert_str_eq(relay_test_err, "--insecure-listen \"foo\": not "
                                     "host:port with an IP literal host");
}
END_TEST


START_TEST(test_config_control_bytes_in_a_value_stay_on_one_line)
{
    struct relay_config cfg;

    ck_assert_int_eq(relay_test_parse(&cfg, RELAY_ARGV("--log-level",
                                                       "in\nfo\"")),
                     RELAY_CONFIG_ERROR);
    relay_test_assert_err_has("\"in\\x0afo\\\"\"");
}
END_TEST


START_TEST(test_config_missing_value_is_refused)
{
    struct relay_config cfg;

    ck_assert_int_eq(relay_test_parse(&cfg, RELAY_ARGV("--workers")),
                     RELAY_CONFIG_ERROR);
    ck_assert_str_eq(relay_test_err, "--workers: needs a value");
}
END_TEST


START_TEST(test_config_unknown_option_is_refused)
{
    struct relay_config cfg;

    ck_assert_int_eq(relay_test_parse(&cfg, RELAY_ARGV("--frobnicate=1")),
                     RELAY_CONFIG_ERROR);
    relay_test_assert_err_has("\"--frobnicate\"");
    ck_assert_int_eq(relay_test_parse(&cfg, RELAY_ARGV("-z")),
                     RELAY_CONFIG_ERROR);
    relay_test_assert_err_has("-z");
}
END_TEST


START_TEST(test_config_value_on_a_plain_flag_is_refused)
{
    struct relay_config cfg;

    ck_assert_int_eq(relay_test_parse(&cfg,
                                      RELAY_ARGV("--trust-x-forwarded-for=no")),
                     RELAY_CONFIG_ERROR);
    ck_assert_str_eq(relay_test_err,
                     "--trust-x-forwarded-for: takes no value");
}
END_TEST


START_TEST(test_config_operand_is_refused)
{
    struct relay_config cfg;

    ck_assert_int_eq(relay_test_parse(&cfg, RELAY_ARGV("--workers", "2",
                                                       "start")),
                     RELAY_CONFIG_ERROR);
    relay_test_assert_err_has("\"start\"");
}
END_TEST


START_TEST(test_config_unsupported_flag_is_refused)
{
    struct relay_config cfg;
    char flag[64];
    char want[96];

    snprintf(flag, sizeof(flag), "--%s", relay_test_unsupported[_i]);
    snprintf(want, sizeof(want), "%s: not supported in this build", flag);

    ck_assert_int_eq(relay_test_parse(&cfg, RELAY_ARGV(flag)),
                     RELAY_CONFIG_ERROR);
    ck_assert_str_eq(relay_test_err, want);

    /* Refused before anything else, whatever follows it. */
    ck_assert_int_eq(relay_test_parse(&cfg, RELAY_ARGV(flag, "0.0.0.0:443",
                                                       "--workers", "0")),
                     RELAY_CONFIG_ERROR);
    ck_assert_str_eq(relay_test_err, want);
}
END_TEST


START_TEST(test_config_unsupported_file_key_is_refused)
{
    struct relay_config cfg;
    char text[128];
    char want[96];

    snprintf(text, sizeof(text), "\n%s = x\n", relay_test_unsupported[_i]);
    snprintf(want, sizeof(want), "relay.conf:2: %s: not supported in this "
             "build", relay_test_unsupported[_i]);

    ck_assert_int_eq(relay_test_load(&cfg, text), RELAY_CONFIG_ERROR);
    relay_test_assert_err_has(want);
}
END_TEST


START_TEST(test_config_help_prints_every_flag_with_its_default)
{
    char *out;
    char want[64];
    size_t i;

    out = relay_test_capture(relay_config_usage);

    for (i = 0; i < sizeof(relay_test_keys) / sizeof(relay_test_keys[0]);
         i++) {
        snprintf(want, sizeof(want), "--%s", relay_test_keys[i].name);
        ck_assert_msg(strstr(out, want) != NULL, "--help lacks %s", want);
    }
    ck_assert_ptr_nonnull(strstr(out, "--config FILE"));
    ck_assert_ptr_nonnull(strstr(out, "-t, --check-config"));
    ck_assert_ptr_nonnull(strstr(out, "-V, --version"));
    ck_assert_ptr_nonnull(strstr(out, "-h, --help"));
    ck_assert_ptr_nonnull(strstr(out, "(default 127.0.0.1:8080)"));
    ck_assert_ptr_nonnull(strstr(out, "(default 127.0.0.1:9090)"));
    ck_assert_ptr_nonnull(strstr(out, "(default 65536)"));
    ck_assert_ptr_nonnull(strstr(out, "(default info)"));
    for (i = 0; i < 5; i++) {
        snprintf(want, sizeof(want), "--%s", relay_test_unsupported[i]);
        ck_assert_msg(strstr(out, want) != NULL, "--help lacks %s", want);
    }
}
END_TEST


START_TEST(test_config_help_lines_fit_80_columns)
{
    const char *line;
    const char *nl;
    char *out;

    out = relay_test_capture(relay_config_usage);

    for (line = out; *line != '\0'; line = nl + 1) {
        nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        ck_assert_msg(nl - line < 80, "--help line too long: %.*s",
                      (int) (nl - line), line);
    }
}
END_TEST


static void
relay_test_parse_help(void)
{
    struct relay_config cfg;

    ck_assert_int_eq(relay_test_parse(&cfg, RELAY_ARGV("--workers", "2",
                                                       "-h")),
                     RELAY_CONFIG_EXIT);
}


static void
relay_test_parse_version(void)
{
    struct relay_config cfg;

    ck_assert_int_eq(relay_test_parse(&cfg, RELAY_ARGV("--version")),
                     RELAY_CONFIG_EXIT);
}


START_TEST(test_config_help_returns_exit)
{
    char *out;

    out = relay_test_capture(relay_test_parse_help);
    ck_assert_ptr_nonnull(strstr(out, "Usage: pyrycode-relay"));
}
END_TEST


START_TEST(test_config_version_prints_the_package_version)
{
    ck_assert_str_eq(relay_test_capture(relay_test_parse_version),
                     "pyrycode-relay " PACKAGE_VERSION "\n");
}
END_TEST


START_TEST(test_config_parse_twice_gives_the_same_result)
{
    struct relay_config a;
    struct relay_config b;
    char **argv;

    argv = RELAY_ARGV("--workers", "4", "--grace-period", "2s");
    ck_assert_int_eq(relay_test_parse(&a, argv), RELAY_CONFIG_OK);
    ck_assert_int_eq(relay_test_parse(&b, argv), RELAY_CONFIG_OK);
    ck_assert_mem_eq(&a, &b, sizeof(a));
    ck_assert_str_eq(argv[1], "--workers");
}
END_TEST


/* ----------------------------------------------------------- durations */

START_TEST(test_config_durations)
{
    static const struct {
        const char *text;
        int ok;
        uint32_t ms;
    } cases[] = {
        { "5", 1, 5000 },           { "5s", 1, 5000 },
        { "250ms", 1, 250 },        { "1ms", 1, 1 },
        { "007s", 1, 7000 },        { "4294967295ms", 1, 4294967295u },
        { "4294967s", 1, 4294967000u },
        { "4294968s", 0, 0 },       { "4294967296ms", 0, 0 },
        { "99999999999999999999s", 0, 0 },
        { "0", 0, 0 },              { "0s", 0, 0 },
        { "0ms", 0, 0 },            { "", 0, 0 },
        { "s", 0, 0 },              { "ms", 0, 0 },
        { "5m", 0, 0 },             { "5 s", 0, 0 },
        { " 5s", 0, 0 },            { "5s ", 0, 0 },
        { "-5s", 0, 0 },            { "+5s", 0, 0 },
        { "1.5s", 0, 0 },           { "5S", 0, 0 },
        { "5msx", 0, 0 },           { "5sms", 0, 0 },
    };
    uint32_t ms;
    size_t i;
    int rc;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ms = 12345;
        rc = relay_config_parse_duration(cases[i].text, &ms);
        ck_assert_msg(rc == (cases[i].ok ? 0 : -1), "\"%s\": rc %d",
                      cases[i].text, rc);
        if (cases[i].ok) {
            ck_assert_msg(ms == cases[i].ms, "\"%s\": %u ms", cases[i].text,
                          ms);
        } else {
            ck_assert_uint_eq(ms, 12345);
        }
    }
}
END_TEST


/* ----------------------------------------------------------- addresses */

START_TEST(test_config_addresses_that_parse)
{
    static const struct {
        const char *text;
        int family;
        const char *host;
        int port;
    } cases[] = {
        { "127.0.0.1:8080", AF_INET, "127.0.0.1", 8080 },
        { "0.0.0.0:1", AF_INET, "0.0.0.0", 1 },
        { ":65535", AF_INET, "0.0.0.0", 65535 },
        { "[::1]:443", AF_INET6, "::1", 443 },
        { "[::]:80", AF_INET6, "::", 80 },
        { "[2001:db8::5]:8080", AF_INET6, "2001:db8::5", 8080 },
        { "[::ffff:10.0.0.1]:80", AF_INET6, "::ffff:10.0.0.1", 80 },
        { "192.168.1.20:08080", AF_INET, "192.168.1.20", 8080 },
    };
    struct relay_addr a;
    char host[INET6_ADDRSTRLEN];
    char err[RELAY_CONFIG_ERR_MAX];
    const void *bin;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&a, 0x5a, sizeof(a));
        ck_assert_msg(relay_config_parse_addr(cases[i].text, &a, err,
                                              sizeof(err))
                          == 0,
                      "%s: %s", cases[i].text, err);
        ck_assert_int_eq(a.set, 1);
        ck_assert_str_eq(a.text, cases[i].text);
        ck_assert_int_eq(a.ss.ss_family, cases[i].family);
        if (cases[i].family == AF_INET) {
            ck_assert_int_eq(a.len, sizeof(struct sockaddr_in));
            bin = &((struct sockaddr_in *) &a.ss)->sin_addr;
        } else {
            ck_assert_int_eq(a.len, sizeof(struct sockaddr_in6));
            bin = &((struct sockaddr_in6 *) &a.ss)->sin6_addr;
        }
        ck_assert_ptr_nonnull(inet_ntop(cases[i].family, bin, host,
                                        sizeof(host)));
        ck_assert_str_eq(host, cases[i].host);
        ck_assert_int_eq(relay_test_port(&a), cases[i].port);
    }
}
END_TEST


START_TEST(test_config_addresses_that_are_refused)
{
    static const struct {
        const char *text;
        const char *why;
    } cases[] = {
        { "foo", "not host:port" },
        { "", "not host:port" },
        { "8080", "not host:port" },
        { "localhost:8080", "not host:port" },
        { "1.2.3:80", "not host:port" },
        { "256.1.1.1:80", "not host:port" },
        { "01.2.3.4:80", "not host:port" },
        { "::1:80", "not host:port" },
        { "[::1]", "not host:port" },
        { "[::1]80", "not host:port" },
        { "[::1:80", "not host:port" },
        { "[1.2.3.4]:80", "not host:port" },
        { "[fe80::1%eth0]:80", "not host:port" },
        { " 1.2.3.4:80", "not host:port" },
        { "1.2.3.4:", "port not in 1..65535" },
        { "1.2.3.4:0", "port not in 1..65535" },
        { "1.2.3.4:65536", "port not in 1..65535" },
        { "1.2.3.4:100000", "port not in 1..65535" },
        { "1.2.3.4:80x", "port not in 1..65535" },
        { "1.2.3.4:+80", "port not in 1..65535" },
        { "1.2.3.4:-1", "port not in 1..65535" },
        { "1.2.3.4:http", "port not in 1..65535" },
        { "[::1]:", "port not in 1..65535" },
    };
    struct relay_addr a;
    char err[RELAY_CONFIG_ERR_MAX];
    char lng[300];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        ck_assert_msg(relay_config_parse_addr(cases[i].text, &a, err,
                                              sizeof(err))
                          == -1,
                      "\"%s\" was accepted", cases[i].text);
        ck_assert_msg(strstr(err, cases[i].why) != NULL, "\"%s\": %s",
                      cases[i].text, err);
        ck_assert_ptr_null(strchr(err, '\n'));
    }

    memset(lng, '1', sizeof(lng) - 1);
    lng[sizeof(lng) - 1] = '\0';
    ck_assert_int_eq(relay_config_parse_addr(lng, &a, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "longer than"));
}
END_TEST


START_TEST(test_config_loopback_and_private_addresses)
{
    static const struct {
        const char *text;
        int loopback;
        int private;
    } cases[] = {
        { "127.0.0.1:1", 1, 1 },        { "127.255.0.9:1", 1, 1 },
        { "[::1]:1", 1, 1 },            { "[::ffff:127.0.0.1]:1", 1, 1 },
        { "10.0.0.1:1", 0, 1 },         { "10.255.255.255:1", 0, 1 },
        { "172.16.0.1:1", 0, 1 },       { "172.31.255.254:1", 0, 1 },
        { "172.15.0.1:1", 0, 0 },       { "172.32.0.1:1", 0, 0 },
        { "192.168.0.1:1", 0, 1 },      { "192.169.0.1:1", 0, 0 },
        { "[fd12:3456::1]:1", 0, 1 },   { "[fc00::1]:1", 0, 1 },
        { "[fe80::1]:1", 0, 0 },        { "[::ffff:10.1.1.1]:1", 0, 1 },
        { "[2001:db8::1]:1", 0, 0 },    { "0.0.0.0:1", 0, 0 },
        { ":1", 0, 0 },                 { "[::]:1", 0, 0 },
        { "8.8.8.8:1", 0, 0 },          { "169.254.1.1:1", 0, 0 },
        { "126.0.0.1:1", 0, 0 },        { "128.0.0.1:1", 0, 0 },
    };
    struct relay_addr a;
    char err[RELAY_CONFIG_ERR_MAX];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ck_assert_int_eq(relay_config_parse_addr(cases[i].text, &a, err,
                                                 sizeof(err)),
                         0);
        ck_assert_msg(relay_config_addr_is_loopback(&a) == cases[i].loopback,
                      "%s loopback", cases[i].text);
        ck_assert_msg(relay_config_addr_is_private(&a) == cases[i].private,
                      "%s private", cases[i].text);
    }

    memset(&a, 0, sizeof(a));
    ck_assert_int_eq(relay_config_addr_is_loopback(&a), 0);
    ck_assert_int_eq(relay_config_addr_is_private(&a), 0);
}
END_TEST


/* ---------------------------------------------------------------- file */

START_TEST(test_config_file_sets_every_key)
{
    struct relay_config cfg;
    char text[2048];
    size_t n;
    size_t i;

    n = 0;
    for (i = 0; i < sizeof(relay_test_keys) / sizeof(relay_test_keys[0]);
         i++) {
        n += (size_t) snprintf(text + n, sizeof(text) - n, "%s = %s\n",
                               relay_test_keys[i].name,
                               relay_test_keys[i].value != NULL
                                   ? relay_test_keys[i].value
                                   : "true");
    }

    ck_assert_int_eq(relay_test_load(&cfg, text), RELAY_CONFIG_OK);
    ck_assert_str_eq(cfg.insecure_listen.text, "10.0.0.1:80");
    ck_assert_str_eq(cfg.metrics_listen.text, "127.0.0.2:9100");
    ck_assert_int_eq(cfg.max_connections, 5000);
    ck_assert_int_eq(cfg.max_connections_explicit, 1);
    ck_assert_int_eq(cfg.max_servers, 1024);
    ck_assert_int_eq(cfg.trust_xff, 1);
    ck_assert_int_eq(cfg.workers, 3);
    ck_assert_uint_eq(cfg.grace_ms, 1500);
    ck_assert_uint_eq(cfg.ping_interval_ms, 2000);
    ck_assert_uint_eq(cfg.ping_timeout_ms, 3000);
    ck_assert_uint_eq(cfg.probe_ms, 400);
    ck_assert_uint_eq(cfg.drain_ms, 7000);
    ck_assert_uint_eq(cfg.reload_drain_ms, 60000);
    ck_assert_str_eq(cfg.user, "relay");
    ck_assert_str_eq(cfg.pid_file, "/run/relay.pid");
    ck_assert_str_eq(cfg.log_file, "/var/log/relay.log");
    ck_assert_int_eq(cfg.log_level, RELAY_LOG_DEBUG);
}
END_TEST


START_TEST(test_config_file_comments_blanks_and_quotes)
{
    struct relay_config cfg;

    ck_assert_int_eq(relay_test_load(&cfg,
                                     "# a comment\n"
                                     "\n"
                                     "   \t\n"
                                     "   # an indented comment\n"
                                     "workers=2\n"
                                     "  grace-period   =   5s   # trailing\n"
                                     "log-file = /var/log/a#b.log\n"
                                     "user = \"re lay\"  # quoted\n"
                                     "pid-file = \"/run/#x\"\r\n"
                                     "metrics-listen = \"\"\n"
                                     "trust-x-forwarded-for = false\n"
                                     "workers = 6\n"),
                     RELAY_CONFIG_OK);
    ck_assert_int_eq(cfg.workers, 6);
    ck_assert_uint_eq(cfg.grace_ms, 5000);
    ck_assert_str_eq(cfg.log_file, "/var/log/a#b.log");
    ck_assert_str_eq(cfg.user, "re lay");
    ck_assert_str_eq(cfg.pid_file, "/run/#x");
    ck_assert_int_eq(cfg.metrics_listen.set, 0);
    ck_assert_int_eq(cfg.trust_xff, 0);
}
END_TEST


START_TEST(test_config_file_empty_value_disables_metrics)
{
    struct relay_config cfg;

    ck_assert_int_eq(relay_test_load(&cfg, "metrics-listen =\n"),
                     RELAY_CONFIG_OK);
    ck_assert_int_eq(cfg.metrics_listen.set, 0);
}
END_TEST


START_TEST(test_config_file_errors_name_file_and_line)
{
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        { "# one\n\nbogus = 1\n", "relay.conf:3: unknown key \"bogus\"" },
        { "workers = 2\nworkers = 0\n",
          "relay.conf:2: workers \"0\": not a number in 1..1024" },
        { "\n\n\n\nping-interval = 5x\n",
          "relay.conf:5: ping-interval \"5x\": not a duration" },
        { "workers 2\n", "relay.conf:1: expected \"key = value\"" },
        { "= 2\n", "relay.conf:1: expected \"key = value\"" },
        { "trust-x-forwarded-for = yes\n",
          "relay.conf:1: trust-x-forwarded-for \"yes\": must be true or "
          "false" },
        { "trust-x-forwarded-for\n", "relay.conf:1: expected" },
        { "user = \"abc\n", "relay.conf:1: user: missing closing quote" },
        { "user = \"a\" b\n", "relay.conf:1: user: text after" },
        { "insecure-listen = foo\n",
          "relay.conf:1: insecure-listen \"foo\": not host:port" },
        { "config = /etc/x\n",
          "relay.conf:1: config: only valid on the command line" },
        { "check-config = true\n",
          "relay.conf:1: check-config: only valid on the command line" },
        { "--workers = 2\n", "relay.conf:1: unknown key \"--workers\"" },
    };
    struct relay_config cfg;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ck_assert_int_eq(relay_test_load(&cfg, cases[i].text),
                         RELAY_CONFIG_ERROR);
        ck_assert_msg(strstr(relay_test_err, cases[i].want) != NULL,
                      "case %zu: \"%s\" lacks \"%s\"", i, relay_test_err,
                      cases[i].want);
        ck_assert_ptr_null(strchr(relay_test_err, '\n'));
    }
}
END_TEST


START_TEST(test_config_file_overlong_line_is_refused)
{
    struct relay_config cfg;
    char *text;
    size_t n;

    n = 3 * PATH_MAX;
    text = malloc(n + 32);
    ck_assert_ptr_nonnull(text);
    memcpy(text, "workers = 2\nuser = ", 19);
    memset(text + 19, 'a', n);
    strcpy(text + 19 + n, "\n");

    ck_assert_int_eq(relay_test_load(&cfg, text), RELAY_CONFIG_ERROR);
    relay_test_assert_err_has("relay.conf:2: line longer than");
    free(text);
}
END_TEST


START_TEST(test_config_missing_file_is_refused)
{
    struct relay_config cfg;
    char path[300];

    snprintf(path, sizeof(path), "%s/absent.conf", relay_test_dir);
    ck_assert_int_eq(relay_test_parse(&cfg, RELAY_ARGV("--config", path)),
                     RELAY_CONFIG_ERROR);
    relay_test_assert_err_has("absent.conf: cannot open: ");
}
END_TEST


START_TEST(test_config_flag_overrides_file_whatever_the_order)
{
    struct relay_config cfg;
    char path[300];

    snprintf(path, sizeof(path), "%s",
             relay_test_file("r.conf", "workers = 4\nping-timeout = 9s\n"
                                       "log-level = err\n"));

    ck_assert_int_eq(relay_test_parse(&cfg,
                                      RELAY_ARGV("--workers", "2",
                                                 "--config", path,
                                                 "--log-level", "debug")),
                     RELAY_CONFIG_OK);
    ck_assert_int_eq(cfg.workers, 2);
    ck_assert_int_eq(cfg.log_level, RELAY_LOG_DEBUG);
    ck_assert_uint_eq(cfg.ping_timeout_ms, 9000);
    ck_assert_str_eq(cfg.config_file, path);
}
END_TEST


START_TEST(test_config_file_error_wins_over_later_flags)
{
    struct relay_config cfg;
    char path[300];

    snprintf(path, sizeof(path), "%s",
             relay_test_file("r.conf", "workers = many\n"));

    ck_assert_int_eq(relay_test_parse(&cfg,
                                      RELAY_ARGV("--config", path,
                                                 "--workers", "2")),
                     RELAY_CONFIG_ERROR);
    relay_test_assert_err_has("r.conf:1: workers \"many\"");
}
END_TEST


/* --------------------------------------------------------- environment */

START_TEST(test_config_production_unset_is_off)
{
    struct relay_config cfg;

    ck_assert_int_eq(relay_test_parse(&cfg, RELAY_ARGV("--insecure-listen",
                                                       "0.0.0.0:80")),
                     RELAY_CONFIG_OK);
    ck_assert_int_eq(cfg.production, 0);
}
END_TEST


START_TEST(test_config_production_1_is_on)
{
    struct relay_config cfg;

    setenv("PYRYCODE_RELAY_PRODUCTION", "1", 1);
    ck_assert_int_eq(relay_test_parse(&cfg, (char *[]){ "relay", NULL }),
                     RELAY_CONFIG_OK);
    ck_assert_int_eq(cfg.production, 1);
}
END_TEST


START_TEST(test_config_production_other_values_are_refused)
{
    static const char *const values[] = { "0", "", "yes", "true", "1 ", "2" };
    struct relay_config cfg;
    size_t i;

    for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        setenv("PYRYCODE_RELAY_PRODUCTION", values[i], 1);
        ck_assert_int_eq(relay_test_parse(&cfg,
                                          (char *[]){ "relay", NULL }),
                         RELAY_CONFIG_ERROR);
        relay_test_assert_err_has("PYRYCODE_RELAY_PRODUCTION=");
        relay_test_assert_err_has("must be 1 or unset");
    }
}
END_TEST


START_TEST(test_config_production_refuses_a_public_listener)
{
    static const char *const refused[] = {
        "0.0.0.0:80", ":80", "[::]:80", "8.8.8.8:80", "[2001:db8::1]:80",
        "172.32.0.1:80"
    };
    static const char *const allowed[] = {
        "127.0.0.1:80", "[::1]:80", "10.1.2.3:80", "172.20.0.1:80",
        "192.168.5.5:80", "[fd00::1]:80"
    };
    struct relay_config cfg;
    size_t i;

    setenv("PYRYCODE_RELAY_PRODUCTION", "1", 1);
    for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        ck_assert_int_eq(relay_test_parse(&cfg,
                                          RELAY_ARGV("--insecure-listen",
                                                     (char *) refused[i])),
                         RELAY_CONFIG_ERROR);
        ck_assert_msg(strncmp(relay_test_err, "--insecure-listen ", 18) == 0,
                      "%s", relay_test_err);
        relay_test_assert_err_has("PYRYCODE_RELAY_PRODUCTION=1");
    }
    for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        ck_assert_int_eq(relay_test_parse(&cfg,
                                          RELAY_ARGV("--insecure-listen",
                                                     (char *) allowed[i])),
                         RELAY_CONFIG_OK);
    }
}
END_TEST


START_TEST(test_config_production_checks_the_file_value_too)
{
    struct relay_config cfg;
    char path[300];

    setenv("PYRYCODE_RELAY_PRODUCTION", "1", 1);
    snprintf(path, sizeof(path), "%s",
             relay_test_file("r.conf", "insecure-listen = 0.0.0.0:8080\n"));
    ck_assert_int_eq(relay_test_parse(&cfg, RELAY_ARGV("--config", path)),
                     RELAY_CONFIG_ERROR);
    relay_test_assert_err_has("\"0.0.0.0:8080\"");
}
END_TEST


START_TEST(test_config_fcm_credentials_mark_push_configured)
{
    struct relay_config cfg;

    setenv("PYRYCODE_RELAY_FCM_CREDENTIALS", "", 1);
    ck_assert_int_eq(relay_test_parse(&cfg, (char *[]){ "relay", NULL }),
                     RELAY_CONFIG_OK);
    ck_assert_int_eq(cfg.fcm_configured, 0);

    setenv("PYRYCODE_RELAY_FCM_CREDENTIALS", "/etc/relay/fcm.json", 1);
    ck_assert_int_eq(relay_test_parse(&cfg, (char *[]){ "relay", NULL }),
                     RELAY_CONFIG_OK);
    ck_assert_int_eq(cfg.fcm_configured, 1);
}
END_TEST


/* ------------------------------------------------------- documentation */

/* "--name" as troff writes it, each '-' escaped as \-. */
static void
relay_test_troff_flag(char *out, size_t cap, const char *name)
{
    size_t n;

    n = (size_t) snprintf(out, cap, "\\-\\-");
    for (; *name != '\0' && n + 3 < cap; name++) {
        if (*name == '-') {
            out[n++] = '\\';
        }
        out[n++] = *name;
    }
    out[n] = '\0';
}


START_TEST(test_config_man_page_and_sample_file_cover_every_key)
{
    char *man;
    char *conf;
    char want[96];
    size_t i;

    man = relay_test_read_source("doc/pyrycode-relay.8");
    if (man == NULL) {
        fprintf(stderr, "check_config: RELAY_SRCDIR unset and no doc/ "
                        "found; documentation test skipped\n");
        return;
    }
    conf = relay_test_read_source("contrib/pyrycode-relay.conf");

    for (i = 0; i < sizeof(relay_test_keys) / sizeof(relay_test_keys[0]);
         i++) {
        relay_test_troff_flag(want, sizeof(want), relay_test_keys[i].name);
        ck_assert_msg(strstr(man, want) != NULL, "man page lacks %s", want);
        snprintf(want, sizeof(want), "\n# %s = ", relay_test_keys[i].name);
        ck_assert_msg(strstr(conf, want) != NULL,
                      "sample config lacks \"%s\"", want + 1);
    }
    for (i = 0; i < 5; i++) {
        relay_test_troff_flag(want, sizeof(want), relay_test_unsupported[i]);
        ck_assert_msg(strstr(man, want) != NULL, "man page lacks %s", want);
    }

    free(conf);
    free(man);
}
END_TEST


START_TEST(test_config_sample_file_parses_when_uncommented)
{
    struct relay_config cfg;
    struct relay_config def;
    char *conf;
    char *out;
    char *line;
    char *save;
    size_t n;

    conf = relay_test_read_source("contrib/pyrycode-relay.conf");
    if (conf == NULL) {
        fprintf(stderr, "check_config: RELAY_SRCDIR unset and no contrib/ "
                        "found; sample config test skipped\n");
        return;
    }

    /* "# key = default" lines, uncommented, must give the defaults. */
    out = malloc(strlen(conf) + 1);
    ck_assert_ptr_nonnull(out);
    n = 0;
    for (line = strtok_r(conf, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "# ", 2) == 0 && line[2] >= 'a' && line[2] <= 'z'
            && strstr(line, " = ") != NULL) {
            n += (size_t) sprintf(out + n, "%s\n", line + 2);
        }
    }
    out[n] = '\0';

    ck_assert_int_eq(relay_test_load(&cfg, out), RELAY_CONFIG_OK);
    relay_config_defaults(&def);
    ck_assert_mem_eq(&cfg, &def, sizeof(cfg));

    free(out);
    free(conf);
}
END_TEST


Suite *
relay_suite_config(void)
{
    Suite *s;
    TCase *tc;

    s = suite_create("config");

    tc = tcase_create("defaults");
    tcase_add_checked_fixture(tc, relay_test_setup, relay_test_teardown);
    tcase_add_test(tc, test_config_defaults_are_the_documented_ones);
    tcase_add_test(tc, test_config_no_arguments_keep_the_defaults);
    suite_add_tcase(s, tc);

    tc = tcase_create("flags");
    tcase_add_checked_fixture(tc, relay_test_setup, relay_test_teardown);
    tcase_add_test(tc, test_config_every_flag_is_parsed);
    tcase_add_test(tc, test_config_flags_accept_the_equals_form);
    tcase_add_test(tc, test_config_short_t_is_check_config);
    tcase_add_test(tc, test_config_workers_auto_means_online_cpus);
    tcase_add_test(tc, test_config_workers_limits_are_inclusive);
    tcase_add_test(tc, test_config_empty_metrics_listen_disables_metrics);
    tcase_add_test(tc, test_config_log_level_words);
    tcase_add_loop_test(tc, test_config_bad_value_is_refused_naming_the_flag,
                        0,
                        sizeof(relay_test_bad_values)
                            / sizeof(relay_test_bad_values[0]));
    tcase_add_test(tc, test_config_bad_address_message_says_what_is_expected);
    tcase_add_test(tc, test_config_control_bytes_in_a_value_stay_on_one_line);
    tcase_add_test(tc, test_config_missing_value_is_refused);
    tcase_add_test(tc, test_config_unknown_option_is_refused);
    tcase_add_test(tc, test_config_value_on_a_plain_flag_is_refused);
    tcase_add_test(tc, test_config_operand_is_refused);
    tcase_add_loop_test(tc, test_config_unsupported_flag_is_refused, 0, 5);
    tcase_add_loop_test(tc, test_config_unsupported_file_key_is_refused, 0,
                        5);
    tcase_add_test(tc, test_config_help_prints_every_flag_with_its_default);
    tcase_add_test(tc, test_config_help_lines_fit_80_columns);
    tcase_add_test(tc, test_config_help_returns_exit);
    tcase_add_test(tc, test_config_version_prints_the_package_version);
    tcase_add_test(tc, test_config_parse_twice_gives_the_same_result);
    suite_add_tcase(s, tc);

    tc = tcase_create("values");
    tcase_add_checked_fixture(tc, relay_test_setup, relay_test_teardown);
    tcase_add_test(tc, test_config_durations);
    tcase_add_test(tc, test_config_addresses_that_parse);
    tcase_add_test(tc, test_config_addresses_that_are_refused);
    tcase_add_test(tc, test_config_loopback_and_private_addresses);
    suite_add_tcase(s, tc);

    tc = tcase_create("file");
    tcase_add_checked_fixture(tc, relay_test_setup, relay_test_teardown);
    tcase_add_test(tc, test_config_file_sets_every_key);
    tcase_add_test(tc, test_config_file_comments_blanks_and_quotes);
    tcase_add_test(tc, test_config_file_empty_value_disables_metrics);
    tcase_add_test(tc, test_config_file_errors_name_file_and_line);
    tcase_add_test(tc, test_config_file_overlong_line_is_refused);
    tcase_add_test(tc, test_config_missing_file_is_refused);
    tcase_add_test(tc, test_config_flag_overrides_file_whatever_the_order);
    tcase_add_test(tc, test_config_file_error_wins_over_later_flags);
    suite_add_tcase(s, tc);

    tc = tcase_create("environment");
    tcase_add_checked_fixture(tc, relay_test_setup, relay_test_teardown);
    tcase_add_test(tc, test_config_production_unset_is_off);
    tcase_add_test(tc, test_config_production_1_is_on);
    tcase_add_test(tc, test_config_production_other_values_are_refused);
    tcase_add_test(tc, test_config_production_refuses_a_public_listener);
    tcase_add_test(tc, test_config_production_checks_the_file_value_too);
    tcase_add_test(tc, test_config_fcm_credentials_mark_push_configured);
    suite_add_tcase(s, tc);

    tc = tcase_create("documentation");
    tcase_add_checked_fixture(tc, relay_test_setup, relay_test_teardown);
    tcase_add_test(tc, test_config_man_page_and_sample_file_cover_every_key);
    tcase_add_test(tc, test_config_sample_file_parses_when_uncommented);
    suite_add_tcase(s, tc);

    return s;
}
