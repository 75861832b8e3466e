/*
 * config.c: turns defaults, a config file, flags and the environment into
 * one struct relay_config, or into one line saying what is wrong.
 *
 * Every setting has one name, used as "--name" on the command line and as
 * "name" in the file, and one setter, so both spellings accept exactly the
 * same values.  The module does no logging and starts nothing: it is run
 * again from scratch on SIGHUP and by -t, and its only output is --help
 * and --version on stdout.
 */

#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/config.h"
#include "relay/log.h"

#define RELAY_CONFIG_DEFAULT_INSECURE   "127.0.0.1:8080"
#define RELAY_CONFIG_DEFAULT_METRICS    "127.0.0.1:9090"

/* Longest quoted value echoed back in an error, before "...". */
#define RELAY_CONFIG_ECHO_MAX           80

/* Option ids past the char range, for options without a short form. */
enum relay_config_opt {
    RELAY_OPT_INSECURE_LISTEN = 256,
    RELAY_OPT_METRICS_LISTEN,
    RELAY_OPT_MAX_CONNECTIONS,
    RELAY_OPT_MAX_SERVERS,
    RELAY_OPT_TRUST_XFF,
    RELAY_OPT_WORKERS,
    RELAY_OPT_GRACE_PERIOD,
    RELAY_OPT_PING_INTERVAL,
    RELAY_OPT_PING_TIMEOUT,
    RELAY_OPT_PROBE_TIMEOUT,
    RELAY_OPT_DRAIN_TIMEOUT,
    RELAY_OPT_RELOAD_DRAIN_TIMEOUT,
    RELAY_OPT_USER,
    RELAY_OPT_PID_FILE,
    RELAY_OPT_LOG_FILE,
    RELAY_OPT_LOG_LEVEL,
    RELAY_OPT_CONFIG,
    RELAY_OPT_TLS_LISTEN,
    RELAY_OPT_TLS_CERT,
    RELAY_OPT_TLS_KEY,
    RELAY_OPT_DOMAIN,
    RELAY_OPT_PROXY_PROTOCOL,
    RELAY_OPT_CHECK = 't',
    RELAY_OPT_VERSION = 'V',
    RELAY_OPT_HELP = 'h'
};

/*
 * Every option, in --help order.  The file accepts the same names except
 * the ones relay_config_cmdline_only() lists.
 */
static const struct option relay_config_options[] = {
    { "insecure-listen", required_argument, NULL, RELAY_OPT_INSECURE_LISTEN },
    { "metrics-listen", required_argument, NULL, RELAY_OPT_METRICS_LISTEN },
    { "max-connections", required_argument, NULL, RELAY_OPT_MAX_CONNECTIONS },
    { "max-servers", required_argument, NULL, RELAY_OPT_MAX_SERVERS },
    { "trust-x-forwarded-for", no_argument, NULL, RELAY_OPT_TRUST_XFF },
    { "workers", required_argument, NULL, RELAY_OPT_WORKERS },
    { "grace-period", required_argument, NULL, RELAY_OPT_GRACE_PERIOD },
    { "ping-interval", required_argument, NULL, RELAY_OPT_PING_INTERVAL },
    { "ping-timeout", required_argument, NULL, RELAY_OPT_PING_TIMEOUT },
    { "conflict-probe-timeout", required_argument, NULL,
      RELAY_OPT_PROBE_TIMEOUT },
    { "drain-timeout", required_argument, NULL, RELAY_OPT_DRAIN_TIMEOUT },
    { "reload-drain-timeout", required_argument, NULL,
      RELAY_OPT_RELOAD_DRAIN_TIMEOUT },
    { "user", required_argument, NULL, RELAY_OPT_USER },
    { "pid-file", required_argument, NULL, RELAY_OPT_PID_FILE },
    { "log-file", required_argument, NULL, RELAY_OPT_LOG_FILE },
    { "log-level", required_argument, NULL, RELAY_OPT_LOG_LEVEL },
    { "config", required_argument, NULL, RELAY_OPT_CONFIG },
    { "check-config", no_argument, NULL, RELAY_OPT_CHECK },
    { "version", no_argument, NULL, RELAY_OPT_VERSION },
    { "help", no_argument, NULL, RELAY_OPT_HELP },
    { "tls-listen", required_argument, NULL, RELAY_OPT_TLS_LISTEN },
    { "tls-cert", required_argument, NULL, RELAY_OPT_TLS_CERT },
    { "tls-key", required_argument, NULL, RELAY_OPT_TLS_KEY },
    { "domain", required_argument, NULL, RELAY_OPT_DOMAIN },
    { "proxy-protocol", no_argument, NULL, RELAY_OPT_PROXY_PROTOCOL },
    { NULL, 0, NULL, 0 }
};

/* "+" stops at the first operand, so argv is never permuted. */
static const char relay_config_shortopts[] = "+:htV";


static const struct option *
relay_config_find_id(int id)
{
    const struct option *o;

    for (o = relay_config_options; o->name != NULL; o++) {
        if (o->val == id) {
            return o;
        }
    }

    return NULL;
}


static const struct option *
relay_config_find_name(const char *name)
{
    const struct option *o;

    for (o = relay_config_options; o->name != NULL; o++) {
        if (strcmp(o->name, name) == 0) {
            return o;
        }
    }

    return NULL;
}


static int
relay_config_unsupported(int id)
{
    return id == RELAY_OPT_TLS_LISTEN || id == RELAY_OPT_TLS_CERT
           || id == RELAY_OPT_TLS_KEY || id == RELAY_OPT_DOMAIN
           || id == RELAY_OPT_PROXY_PROTOCOL;
}


static int
relay_config_cmdline_only(int id)
{
    return id == RELAY_OPT_CONFIG || id == RELAY_OPT_CHECK
           || id == RELAY_OPT_VERSION || id == RELAY_OPT_HELP;
}


/*
 * Write text as "..." for an error message: operator input can hold
 * newlines and escapes, and an error must stay one readable line.
 */
static void
relay_config_quote(char *out, size_t outlen, const char *text)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *t;
    size_t n;
    size_t shown;

    if (outlen < 8) {
        if (outlen > 0) {
            out[0] = '\0';
        }
        return;
    }

    n = 0;
    shown = 0;
    out[n++] = '"';
    for (t = (const unsigned char *) text; *t != '\0'; t++, shown++) {
        /* Room for the longest escape, "...", the quote and the NUL. */
        if (shown == RELAY_CONFIG_ECHO_MAX || n + 4 + 3 + 2 > outlen) {
            memcpy(out + n, "...", 3);
            n += 3;
            break;
        }
        if (*t == '"' || *t == '\\') {
            out[n++] = '\\';
            out[n++] = (char) *t;
        } else if (*t < 0x20 || *t > 0x7e) {
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[*t >> 4];
            out[n++] = hex[*t & 0x0f];
        } else {
            out[n++] = (char) *t;
        }
    }
    out[n++] = '"';
    out[n] = '\0';
}


/* Digits only, no sign or spaces, within min..max. */
static int
relay_config_parse_long(const char *text, long min, long max, long *out)
{
    const char *p;
    long v;

    if (text[0] == '\0') {
        return -1;
    }

    v = 0;
    for (p = text; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }
        if (v > (max - (*p - '0')) / 10) {
            return -1;
        }
        v = v * 10 + (*p - '0');
    }

    if (v < min) {
        return -1;
    }
    *out = v;

    return 0;
}


int
relay_config_parse_duration(const char *text, uint32_t *ms)
{
    const char *p;
    uint64_t v;

    v = 0;
    for (p = text; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (uint64_t) (*p - '0');
        if (v > UINT32_MAX) {
            return -1;
        }
    }
    if (p == text) {
        return -1;
    }

    if (*p == '\0' || strcmp(p, "s") == 0) {
        v *= 1000;
    } else if (strcmp(p, "ms") != 0) {
        return -1;
    }

    if (v == 0 || v > UINT32_MAX) {
        return -1;
    }
    *ms = (uint32_t) v;

    return 0;
}


static int
relay_config_parse_port(const char *text, uint16_t *port)
{
    long v;

    if (strlen(text) > 5 || relay_config_parse_long(text, 1, 65535, &v) != 0) {
        return -1;
    }
    *port = (uint16_t) v;

    return 0;
}


int
relay_config_parse_addr(const char *text, struct relay_addr *addr,
                        char *err, size_t errlen)
{
    struct sockaddr_in6 *sin6;
    struct sockaddr_in *sin;
    struct relay_addr a;
    char host[RELAY_ADDR_TEXT_MAX];
    char quoted[RELAY_CONFIG_ECHO_MAX * 4 + 8];
    const char *port;
    const char *end;
    uint16_t portnum;
    size_t hostlen;

    relay_config_quote(quoted, sizeof(quoted), text);

    if (strlen(text) >= RELAY_ADDR_TEXT_MAX) {
        snprintf(err, errlen, "%s: longer than %d bytes", quoted,
                 RELAY_ADDR_TEXT_MAX - 1);
        return -1;
    }

    /* Built whole, padding included, so equal settings compare equal. */
    memset(&a, 0, sizeof(a));
    sin = (struct sockaddr_in *) &a.ss;
    sin6 = (struct sockaddr_in6 *) &a.ss;

    if (text[0] == '[') {
        end = strchr(text, ']');
        if (end == NULL || end[1] != ':') {
            goto bad_host;
        }
        hostlen = (size_t) (end - text - 1);
        memcpy(host, text + 1, hostlen);
        host[hostlen] = '\0';
        port = end + 2;

        sin6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            goto bad_host;
        }
        a.len = sizeof(*sin6);
    } else {
        end = strrchr(text, ':');
        if (end == NULL) {
            goto bad_host;
        }
        hostlen = (size_t) (end - text);
        memcpy(host, text, hostlen);
        host[hostlen] = '\0';
        port = end + 1;

        /* An empty host is every IPv4 address, as HAProxy reads ":port". */
        sin->sin_family = AF_INET;
        if (host[0] == '\0') {
            sin->sin_addr.s_addr = htonl(INADDR_ANY);
        } else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
            goto bad_host;
        }
        a.len = sizeof(*sin);
    }

    if (relay_config_parse_port(port, &portnum) != 0) {
        snprintf(err, errlen, "%s: port not in 1..65535", quoted);
        return -1;
    }
    if (a.ss.ss_family == AF_INET6) {
        sin6->sin6_port = htons(portnum);
    } else {
        sin->sin_port = htons(portnum);
    }

    a.set = 1;
    memcpy(a.text, text, strlen(text) + 1);
    *addr = a;

    return 0;

bad_host:
    snprintf(err, errlen, "%s: not host:port with an IP literal host", quoted);
    return -1;
}


/*
 * The IPv4 address of addr in host order, also for an IPv4-mapped IPv6
 * address, so "[::ffff:127.0.0.1]" is judged like "127.0.0.1".  Returns 0
 * for a plain IPv6 address.
 */
static int
relay_config_addr_v4(const struct relay_addr *addr, uint32_t *ip)
{
    const struct sockaddr_in6 *sin6;
    const struct sockaddr_in *sin;
    const uint8_t *b;

    if (addr->ss.ss_family == AF_INET) {
        sin = (const struct sockaddr_in *) &addr->ss;
        *ip = ntohl(sin->sin_addr.s_addr);
        return 1;
    }

    sin6 = (const struct sockaddr_in6 *) &addr->ss;
    if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
        b = sin6->sin6_addr.s6_addr + 12;
        *ip = ((uint32_t) b[0] << 24) | ((uint32_t) b[1] << 16)
              | ((uint32_t) b[2] << 8) | b[3];
        return 1;
    }

    return 0;
}


int
relay_config_addr_is_loopback(const struct relay_addr *addr)
{
    const struct sockaddr_in6 *sin6;
    uint32_t ip;

    if (addr == NULL || !addr->set) {
        return 0;
    }

    if (relay_config_addr_v4(addr, &ip)) {
        return (ip >> 24) == 127;
    }

    sin6 = (const struct sockaddr_in6 *) &addr->ss;

    return IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
}


int
relay_config_addr_is_private(const struct relay_addr *addr)
{
    const struct sockaddr_in6 *sin6;
    uint32_t ip;

    if (addr == NULL || !addr->set) {
        return 0;
    }
    if (relay_config_addr_is_loopback(addr)) {
        return 1;
    }

    if (relay_config_addr_v4(addr, &ip)) {
        return (ip >> 24) == 10 || (ip >> 20) == ((172u << 4) | 1)
               || (ip >> 16) == ((192u << 8) | 168);
    }

    /* fc00::/7, the unique local addresses of RFC 4193. */
    sin6 = (const struct sockaddr_in6 *) &addr->ss;

    return (sin6->sin6_addr.s6_addr[0] & 0xfe) == 0xfc;
}


void
relay_config_defaults(struct relay_config *cfg)
{
    char err[RELAY_CONFIG_ERR_MAX];

    memset(cfg, 0, sizeof(*cfg));

    (void) relay_config_parse_addr(RELAY_CONFIG_DEFAULT_INSECURE,
                                   &cfg->insecure_listen, err, sizeof(err));
    (void) relay_config_parse_addr(RELAY_CONFIG_DEFAULT_METRICS,
                                   &cfg->metrics_listen, err, sizeof(err));
    cfg->max_connections = 0;
    cfg->max_servers = 65536;
    cfg->workers = 0;
    cfg->grace_ms = 30000;
    cfg->ping_interval_ms = 30000;
    cfg->ping_timeout_ms = 30000;
    cfg->probe_ms = 10000;
    cfg->drain_ms = 10000;
    cfg->reload_drain_ms = 300000;
    cfg->log_level = RELAY_LOG_INFO;
}


static int
relay_config_copy_string(char *dst, size_t cap, const char *value,
                         const char *name, char *err, size_t errlen)
{
    char quoted[RELAY_CONFIG_ECHO_MAX * 4 + 8];
    size_t n;

    n = strlen(value);
    if (n >= cap) {
        relay_config_quote(quoted, sizeof(quoted), value);
        snprintf(err, errlen, "%s %s: longer than %zu bytes", name, quoted,
                 cap - 1);
        return -1;
    }
    memcpy(dst, value, n + 1);

    return 0;
}


static int
relay_config_set_duration(uint32_t *ms, const char *value, const char *name,
                          char *err, size_t errlen)
{
    char quoted[RELAY_CONFIG_ECHO_MAX * 4 + 8];

    if (relay_config_parse_duration(value, ms) != 0) {
        relay_config_quote(quoted, sizeof(quoted), value);
        snprintf(err, errlen,
                 "%s %s: not a duration above zero (digits, then ms or s)",
                 name, quoted);
        return -1;
    }

    return 0;
}


/*
 * Apply one setting.  name is how the error names its source: "--workers"
 * for a flag, "FILE:LINE: workers" for the file.  value is NULL only for
 * --trust-x-forwarded-for given as a flag.
 */
static int
relay_config_apply(struct relay_config *cfg, int id, const char *value,
                   const char *name, char *err, size_t errlen)
{
    char quoted[RELAY_CONFIG_ECHO_MAX * 4 + 8];
    char why[RELAY_CONFIG_ERR_MAX];
    struct relay_addr addr;
    long v;
    int level;

    quoted[0] = '\0';
    if (value != NULL) {
        relay_config_quote(quoted, sizeof(quoted), value);
    }

    switch (id) {
    case RELAY_OPT_INSECURE_LISTEN:
        if (relay_config_parse_addr(value, &addr, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s %s", name, why);
            return -1;
        }
        cfg->insecure_listen = addr;
        return 0;

    case RELAY_OPT_METRICS_LISTEN:
        if (value[0] == '\0') {
            memset(&cfg->metrics_listen, 0, sizeof(cfg->metrics_listen));
            return 0;
        }
        if (relay_config_parse_addr(value, &addr, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s %s", name, why);
            return -1;
        }
        if (!relay_config_addr_is_loopback(&addr)) {
            snprintf(err, errlen,
                     "%s %s: must be a loopback IP literal (127.0.0.0/8 or "
                     "[::1]), or empty to disable",
                     name, quoted);
            return -1;
        }
        cfg->metrics_listen = addr;
        return 0;

    case RELAY_OPT_MAX_CONNECTIONS:
        if (strcmp(value, "auto") == 0) {
            cfg->max_connections = 0;
            cfg->max_connections_explicit = 0;
            return 0;
        }
        if (relay_config_parse_long(value, 1, INT_MAX, &v) != 0) {
            snprintf(err, errlen, "%s %s: not a number in 1..%d or auto",
                     name, quoted, INT_MAX);
            return -1;
        }
        cfg->max_connections = v;
        cfg->max_connections_explicit = 1;
        return 0;

    case RELAY_OPT_MAX_SERVERS:
        if (relay_config_parse_long(value, 1, RELAY_CONFIG_MAX_SERVERS_MAX,
                                    &v)
            != 0) {
            snprintf(err, errlen, "%s %s: not a number in 1..%d", name,
                     quoted, RELAY_CONFIG_MAX_SERVERS_MAX);
            return -1;
        }
        cfg->max_servers = v;
        return 0;

    case RELAY_OPT_TRUST_XFF:
        if (value == NULL || strcmp(value, "true") == 0) {
            cfg->trust_xff = 1;
        } else if (strcmp(value, "false") == 0) {
            cfg->trust_xff = 0;
        } else {
            snprintf(err, errlen, "%s %s: must be true or false", name,
                     quoted);
            return -1;
        }
        return 0;

    case RELAY_OPT_WORKERS:
        if (strcmp(value, "auto") == 0) {
            cfg->workers = 0;
            return 0;
        }
        if (relay_config_parse_long(value, 1, RELAY_CONFIG_WORKERS_MAX, &v)
            != 0) {
            snprintf(err, errlen, "%s %s: not a number in 1..%d or auto",
                     name, quoted, RELAY_CONFIG_WORKERS_MAX);
            return -1;
        }
        cfg->workers = (int) v;
        return 0;

    case RELAY_OPT_GRACE_PERIOD:
        return relay_config_set_duration(&cfg->grace_ms, value, name, err,
                                         errlen);

    case RELAY_OPT_PING_INTERVAL:
        return relay_config_set_duration(&cfg->ping_interval_ms, value, name,
                                         err, errlen);

    case RELAY_OPT_PING_TIMEOUT:
        return relay_config_set_duration(&cfg->ping_timeout_ms, value, name,
                                         err, errlen);

    case RELAY_OPT_PROBE_TIMEOUT:
        return relay_config_set_duration(&cfg->probe_ms, value, name, err,
                                         errlen);

    case RELAY_OPT_DRAIN_TIMEOUT:
        return relay_config_set_duration(&cfg->drain_ms, value, name, err,
                                         errlen);

    case RELAY_OPT_RELOAD_DRAIN_TIMEOUT:
        return relay_config_set_duration(&cfg->reload_drain_ms, value, name,
                                         err, errlen);

    case RELAY_OPT_USER:
        return relay_config_copy_string(cfg->user, sizeof(cfg->user), value,
                                        name, err, errlen);

    case RELAY_OPT_PID_FILE:
        return relay_config_copy_string(cfg->pid_file, sizeof(cfg->pid_file),
                                        value, name, err, errlen);

    case RELAY_OPT_LOG_FILE:
        return relay_config_copy_string(cfg->log_file, sizeof(cfg->log_file),
                                        value, name, err, errlen);

    case RELAY_OPT_LOG_LEVEL:
        level = relay_log_level_parse(value);
        if (level == -1) {
            snprintf(err, errlen,
                     "%s %s: not one of alert, err, warn, notice, info, "
                     "debug",
                     name, quoted);
            return -1;
        }
        cfg->log_level = level;
        return 0;

    case RELAY_OPT_CONFIG:
        return relay_config_copy_string(cfg->config_file,
                                        sizeof(cfg->config_file), value, name,
                                        err, errlen);

    case RELAY_OPT_CHECK:
        cfg->check_only = 1;
        return 0;

    default:
        snprintf(err, errlen, "%s: not supported in this build", name);
        return -1;
    }
}


/* Cut blanks and line ends off both ends of s in place; returns the start. */
static char *
relay_config_trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t') {
        s++;
    }
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'
                       || end[-1] == '\n')) {
        end--;
    }
    *end = '\0';

    return s;
}


/*
 * Split one line into key and value.  Returns 1 for a setting, 0 for a
 * blank or comment line, -1 with err filled for anything else.
 */
static int
relay_config_split(char *line, char **key, char **value, const char *where,
                   char *err, size_t errlen)
{
    char *eq;
    char *v;
    char *endq;
    char *p;

    line = relay_config_trim(line);
    if (line[0] == '\0' || line[0] == '#') {
        return 0;
    }

    eq = strchr(line, '=');
    if (eq == NULL) {
        snprintf(err, errlen, "%s: expected \"key = value\"", where);
        return -1;
    }
    *eq = '\0';
    *key = relay_config_trim(line);
    if ((*key)[0] == '\0') {
        snprintf(err, errlen, "%s: expected \"key = value\"", where);
        return -1;
    }

    v = eq + 1;
    while (*v == ' ' || *v == '\t') {
        v++;
    }

    /* Quotes allow an empty value or a '#'; nothing inside is escaped. */
    if (*v == '"') {
        endq = strchr(v + 1, '"');
        if (endq == NULL) {
            snprintf(err, errlen, "%s: %s: missing closing quote", where,
                     *key);
            return -1;
        }
        *endq = '\0';
        p = relay_config_trim(endq + 1);
        if (p[0] != '\0' && p[0] != '#') {
            snprintf(err, errlen, "%s: %s: text after the closing quote",
                     where, *key);
            return -1;
        }
        *value = v + 1;
        return 1;
    }

    /* A '#' after a blank starts a comment; one inside a word does not. */
    for (p = v; *p != '\0'; p++) {
        if (*p == '#' && p > v && (p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            break;
        }
    }
    *value = relay_config_trim(v);

    return 1;
}


int
relay_config_load_file(struct relay_config *cfg, const char *path,
                       char *err, size_t errlen)
{
    const struct option *o;
    char line[PATH_MAX + 256];
    char where[PATH_MAX + 32];
    char name[PATH_MAX + 128];
    char quoted[RELAY_CONFIG_ECHO_MAX * 4 + 8];
    char *key;
    char *value;
    FILE *f;
    size_t n;
    int lineno;
    int rc;

    f = fopen(path, "re");
    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return RELAY_CONFIG_ERROR;
    }

    rc = RELAY_CONFIG_OK;
    lineno = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        snprintf(where, sizeof(where), "%s:%d", path, lineno);

        n = strlen(line);
        if (n == sizeof(line) - 1 && line[n - 1] != '\n' && !feof(f)) {
            snprintf(err, errlen, "%s: line longer than %zu bytes", where,
                     sizeof(line) - 2);
            rc = RELAY_CONFIG_ERROR;
            break;
        }
        switch (relay_config_split(line, &key, &value, where, err, errlen)) {
        case 0:
            continue;
        case -1:
            rc = RELAY_CONFIG_ERROR;
            goto done;
        default:
            break;
        }

        o = relay_config_find_name(key);
        if (o == NULL) {
            relay_config_quote(quoted, sizeof(quoted), key);
            snprintf(err, errlen, "%s: unknown key %s", where, quoted);
            rc = RELAY_CONFIG_ERROR;
            break;
        }
        snprintf(name, sizeof(name), "%s: %s", where, o->name);
        if (relay_config_cmdline_only(o->val)) {
            snprintf(err, errlen, "%s: only valid on the command line",
                     name);
            rc = RELAY_CONFIG_ERROR;
            break;
        }
        if (relay_config_apply(cfg, o->val, value, name, err, errlen) != 0) {
            rc = RELAY_CONFIG_ERROR;
            break;
        }
    }

    if (rc == RELAY_CONFIG_OK && ferror(f)) {
        snprintf(err, errlen, "%s: read: %s", path, strerror(errno));
        rc = RELAY_CONFIG_ERROR;
    }

done:
    fclose(f);

    return rc;
}


/* Name the option getopt_long() just refused, as the user typed it. */
static void
relay_config_bad_option(int c, int argc, char **argv, char *err,
                        size_t errlen)
{
    const struct option *o;
    char quoted[RELAY_CONFIG_ECHO_MAX * 4 + 8];
    char typed[RELAY_CONFIG_ECHO_MAX + 1];
    const char *arg;
    size_t n;

    o = optopt != 0 ? relay_config_find_id(optopt) : NULL;
    arg = optind > 0 && optind <= argc ? argv[optind - 1] : "";

    if (o != NULL && relay_config_unsupported(o->val)) {
        snprintf(err, errlen, "--%s: not supported in this build", o->name);
    } else if (c == ':' && o != NULL && strncmp(arg, "--", 2) == 0) {
        snprintf(err, errlen, "--%s: needs a value", o->name);
    } else if (c == ':') {
        snprintf(err, errlen, "-%c: needs a value", optopt);
    } else if (o != NULL && strncmp(arg, "--", 2) == 0) {
        /* getopt_long() says '?' for "--flag=value" on a plain flag. */
        snprintf(err, errlen, "--%s: takes no value", o->name);
    } else if (optopt != 0) {
        snprintf(err, errlen, "-%c: unknown option", optopt);
    } else {
        n = strcspn(arg, "=");
        if (n > RELAY_CONFIG_ECHO_MAX) {
            n = RELAY_CONFIG_ECHO_MAX;
        }
        memcpy(typed, arg, n);
        typed[n] = '\0';
        relay_config_quote(quoted, sizeof(quoted), typed);
        snprintf(err, errlen, "%s: unknown or ambiguous option", quoted);
    }
}


static int
relay_config_read_env(struct relay_config *cfg, char *err, size_t errlen)
{
    char quoted[RELAY_CONFIG_ECHO_MAX * 4 + 8];
    const char *v;

    v = getenv("PYRYCODE_RELAY_PRODUCTION");
    if (v == NULL) {
        cfg->production = 0;
    } else if (strcmp(v, "1") == 0) {
        cfg->production = 1;
    } else {
        relay_config_quote(quoted, sizeof(quoted), v);
        snprintf(err, errlen,
                 "PYRYCODE_RELAY_PRODUCTION=%s: must be 1 or unset", quoted);
        return -1;
    }

    v = getenv("PYRYCODE_RELAY_FCM_CREDENTIALS");
    cfg->fcm_configured = v != NULL && v[0] != '\0';

    return 0;
}


static void
relay_config_version(void)
{
    printf("%s %s\n", PACKAGE_NAME, PACKAGE_VERSION);
    fflush(stdout);
}


int
relay_config_parse_args(struct relay_config *cfg, int argc, char **argv,
                        char *err, size_t errlen)
{
    const struct option *o;
    char name[64];
    const char *config;
    int want_help;
    int want_version;
    int c;

    /*
     * First pass: only find --config, --help and --version and reject
     * what getopt cannot parse, because the file must be applied before
     * the flags that override it.  optind = 0 makes glibc start over, so
     * this can run again on reload.
     */
    opterr = 0;
    optind = 0;
    config = NULL;
    want_help = 0;
    want_version = 0;
    while ((c = getopt_long(argc, argv, relay_config_shortopts,
                            relay_config_options, NULL))
           != -1) {
        if (c == '?' || c == ':') {
            relay_config_bad_option(c, argc, argv, err, errlen);
            return RELAY_CONFIG_ERROR;
        }
        if (relay_config_unsupported(c)) {
            o = relay_config_find_id(c);
            snprintf(err, errlen, "--%s: not supported in this build",
                     o->name);
            return RELAY_CONFIG_ERROR;
        }
        if (c == RELAY_OPT_CONFIG) {
            config = optarg;
        } else if (c == RELAY_OPT_HELP) {
            want_help = 1;
        } else if (c == RELAY_OPT_VERSION) {
            want_version = 1;
        }
    }
    if (optind < argc) {
        relay_config_quote(name, sizeof(name), argv[optind]);
        snprintf(err, errlen, "%s: unexpected argument (options only)", name);
        return RELAY_CONFIG_ERROR;
    }

    if (want_help) {
        relay_config_usage();
        return RELAY_CONFIG_EXIT;
    }
    if (want_version) {
        relay_config_version();
        return RELAY_CONFIG_EXIT;
    }

    if (relay_config_read_env(cfg, err, errlen) != 0) {
        return RELAY_CONFIG_ERROR;
    }

    if (config != NULL) {
        if (relay_config_apply(cfg, RELAY_OPT_CONFIG, config, "--config", err,
                               errlen)
            != 0) {
            return RELAY_CONFIG_ERROR;
        }
        if (relay_config_load_file(cfg, config, err, errlen)
            != RELAY_CONFIG_OK) {
            return RELAY_CONFIG_ERROR;
        }
    }

    /* Second pass: the flags, in order, over the file. */
    optind = 0;
    while ((c = getopt_long(argc, argv, relay_config_shortopts,
                            relay_config_options, NULL))
           != -1) {
        if (c == RELAY_OPT_CONFIG) {
            continue;
        }
        o = relay_config_find_id(c);
        snprintf(name, sizeof(name), "--%s", o->name);
        if (relay_config_apply(cfg, c, optarg, name, err, errlen) != 0) {
            return RELAY_CONFIG_ERROR;
        }
    }

    return relay_config_validate(cfg, err, errlen);
}


int
relay_config_validate(const struct relay_config *cfg, char *err,
                      size_t errlen)
{
    char quoted[RELAY_CONFIG_ECHO_MAX * 4 + 8];

    if (!cfg->insecure_listen.set) {
        snprintf(err, errlen, "--insecure-listen: no listener configured");
        return RELAY_CONFIG_ERROR;
    }

    if (cfg->production
        && !relay_config_addr_is_private(&cfg->insecure_listen)) {
        relay_config_quote(quoted, sizeof(quoted), cfg->insecure_listen.text);
        snprintf(err, errlen,
                 "--insecure-listen %s: PYRYCODE_RELAY_PRODUCTION=1 allows "
                 "only a loopback or private (RFC 1918, ULA) address",
                 quoted);
        return RELAY_CONFIG_ERROR;
    }

    return RELAY_CONFIG_OK;
}


void
relay_config_usage(void)
{
    fputs(
"Usage: pyrycode-relay [OPTION]...\n"
"Relay WebSocket traffic between pyry binaries and their phones.\n"
"\n"
"Every option but --config, -t, -V and -h is also a config-file key,\n"
"written without the dashes: \"ping-interval = 5s\".\n"
"\n"
"      --insecure-listen ADDR   plain HTTP listener for /v1/server,\n"
"                               /v1/client and /healthz, behind a TLS\n"
"                               proxy (default 127.0.0.1:8080)\n"
"      --metrics-listen ADDR    /metrics listener, a loopback address only;\n"
"                               \"\" disables it (default 127.0.0.1:9090)\n"
"      --max-connections N      live WebSocket connections, all workers\n"
"                               together, or auto (default auto: 100000,\n"
"                               lowered to what the file-descriptor limit\n"
"                               allows)\n"
"      --max-servers N          server-ids the registry holds, 1..16777216\n"
"                               (default 65536)\n"
"      --trust-x-forwarded-for  rate-limit by the left-most X-Forwarded-For\n"
"                               entry instead of the TCP peer (default off;\n"
"                               in the file: true or false)\n"
"      --workers N              worker processes, 1..1024, or auto for one\n"
"                               per online CPU (default auto)\n"
"      --grace-period DUR       how long a server-id stays reserved after its\n"
"                               binary disconnects (default 30s)\n"
"      --ping-interval DUR      idle time before a ping (default 30s)\n"
"      --ping-timeout DUR       wait for the pong before closing with 1011\n"
"                               (default 30s)\n"
"      --conflict-probe-timeout DUR\n"
"                               wait for a holder's pong before a second\n"
"                               binary takes its server-id (default 10s)\n"
"      --drain-timeout DUR      time connections get to close on stop\n"
"                               (default 10s)\n"
"      --reload-drain-timeout DUR\n"
"                               after a reload (SIGHUP), how long the old\n"
"                               workers keep serving their connections\n"
"                               before closing them (default 300s)\n"
"      --user NAME              drop privileges to NAME after binding\n"
"                               (default: keep the current user)\n"
"      --pid-file PATH          write the master's pid to PATH\n"
"                               (default: none)\n"
"      --log-file PATH          append log lines to PATH (default: stderr)\n"
"      --log-level LEVEL        alert, err, warn, notice, info or debug\n"
"                               (default info)\n"
"      --config FILE            read settings from FILE, then apply the other\n"
"                               options over them (default: none)\n"
"  -t, --check-config           check the configuration, then exit\n"
"  -V, --version                print the version, then exit\n"
"  -h, --help                   print this help, then exit\n"
"\n"
"ADDR is HOST:PORT: an IPv4 literal, [IPv6 literal], or an empty HOST for\n"
"every IPv4 address; PORT is 1..65535.  DUR is a number above zero\n"
"followed by ms or s; a bare number is seconds.\n"
"\n"
"Not supported in this build (refused): --tls-listen, --tls-cert,\n"
"--tls-key, --domain, --proxy-protocol.\n"
"\n"
"Environment: PYRYCODE_RELAY_PRODUCTION=1 refuses to run as root and a\n"
"--insecure-listen address that is not loopback or private.\n"
"PYRYCODE_RELAY_FCM_CREDENTIALS is read, but push wake is not in this\n"
"build.\n"
"\n"
"Exit status: 0 stopped cleanly, 1 runtime failure (e.g. a listener could\n"
"not be bound), 2 invalid configuration.\n",
        stdout);
    fflush(stdout);
}
