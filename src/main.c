/*
 * main.c: pyrycode-relay's entry point: read the configuration, then hand
 * over to the master.
 *
 * Exit status: 0 after a clean stop (or --help, --version, a successful
 * --check-config), 1 when the relay could not start or run (a listener
 * that cannot be bound, a failed fork), 2 for an invalid configuration.
 */

#include <signal.h>
#include <stdio.h>

#include "relay/config.h"
#include "relay/master.h"


int
main(int argc, char **argv)
{
    struct relay_config cfg;
    char err[512];
    int rc;

    relay_config_defaults(&cfg);
    rc = relay_config_parse_args(&cfg, argc, argv, err, sizeof(err));
    if (rc == RELAY_CONFIG_EXIT) {
        return 0;
    }
    if (rc != RELAY_CONFIG_OK) {
        fprintf(stderr, "pyrycode-relay: %s\n", err);
        return 2;
    }

    /* a peer that vanishes mid-write must not kill the process */
    signal(SIGPIPE, SIG_IGN);
    /* SIGUSR2 is a worker test hook; it must never stop the master */
    signal(SIGUSR2, SIG_IGN);

    return relay_master_run(&cfg, argc, argv);
}
