/*
 * master.h: the master process: binds, maps shared memory, forks and
 * supervises the workers.
 */

#ifndef RELAY_MASTER_H
#define RELAY_MASTER_H

#include "relay/config.h"

/*
 * Run the relay with cfg; argc and argv are kept to read the configuration
 * again on SIGHUP.  Returns the process exit status.
 */
int relay_master_run(struct relay_config *cfg, int argc, char **argv);

#endif
