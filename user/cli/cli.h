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
int cmd_leg(int argc, char **argv);
int cmd_trace(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_clean(int argc, char **argv);
int cmd_access(int argc, char **argv);
/* Instance @name's counters in the Prometheus text format: 0 or -errno. */
int stat_prometheus(const char *name, FILE *f);
/* The admission rules pinned at @dir and their counts: text, or into @j. */
void access_report(const char *dir, struct bsteer_json *j);
/* The same as Prometheus counters (bsteer_access_*_total). */
void access_prom(const char *dir, const char *inst, FILE *f);
/* serve --metrics tcp:HOST:PORT: /metrics over HTTP on a thread of its own. */
int metrics_start(const char *addr, const char *instance, bool allow_remote);
void metrics_stop(void);
/* "idle", "requested", "running", "done", "failed" (enum bsteer_resync_state). */
const char *resync_state_name(__u32 state);

/*
 * Usage errors (user/cli/args.c): one line on stderr, "bsteer CMD: WHAT;
 * try 'bsteer CMD --help'", and 2, the exit status for them.
 */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* After getopt_long() returned '?' (opterr is 0): the option it refused. */
int cli_bad_option(const char *cmd, char **argv);
/*
 * Every number of every option: @val must be a whole number in
 * @min..@max (with CLI_SIZE, K/M/G/T suffixes, powers of 1024); else a
 * usage line naming @opt, the value and the range, and -2.
 */
#define CLI_SIZE	0x1
int cli_u64(const char *cmd, const char *opt, const char *val, __u64 min, __u64 max,
	    unsigned flags, __u64 *out);
/* Seconds, a decimal in @min..@max; else as cli_u64(). */
int cli_secs(const char *cmd, const char *opt, const char *val, double min, double max,
	     double *out);

/* Set by SIGINT/SIGTERM; long-running commands poll it. */
extern volatile sig_atomic_t exiting;
void install_signals(void);

#endif /* BSTEER_CLI_H */
