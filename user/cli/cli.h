/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The command line: one file per command (user/cli/NAME.c), each an
 * options struct, a parse function and a call into libbsteer.
 */
#ifndef BSTEER_CLI_H
#define BSTEER_CLI_H

#include <signal.h>
#include "libbsteer.h"

struct bsteer_cmd {
	const char *name;
	const char *summary;
	int (*fn)(int argc, char **argv);
};

int cmd_copy(int argc, char **argv);
int cmd_stat(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_cow(int argc, char **argv);
int cmd_resync(int argc, char **argv);
int cmd_trace(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_clean(int argc, char **argv);
/* Instance @name's counters in the Prometheus text format: 0 or -errno. */
int stat_prometheus(const char *name, FILE *f);
/* serve --metrics tcp:HOST:PORT: /metrics over HTTP on a thread of its own. */
int metrics_start(const char *addr, const char *instance, bool allow_remote);
void metrics_stop(void);
/* "idle", "requested", "running", "done", "failed" (enum bsteer_resync_state). */
const char *resync_state_name(__u32 state);

/* Set by SIGINT/SIGTERM; long-running commands poll it. */
extern volatile sig_atomic_t exiting;
void install_signals(void);

#endif /* BSTEER_CLI_H */
