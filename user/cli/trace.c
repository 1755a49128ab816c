// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * bsteer trace: who holds which registered io_uring buffer, for how long,
 * and what leaked, for any process. Views: a live table (default), one
 * JSON event per line (--json), log2 histograms at exit (--hist), and a
 * leak report at exit. They live in user/trace/; this is the command line.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "trace/trace.h"

static const char trace_usage[] =
"USAGE: bsteer trace [-p PID]... [-c COMM] [OPTIONS] [-- COMMAND [ARGS...]]\n"
"\n"
"Follow io_uring's registered (fixed) buffers in any process: each table\n"
"registration, every request that uses a buffer (opcode, index, bytes,\n"
"submit-to-complete latency, io-wq or not), and the real end of each\n"
"buffer's life, which comes after unregister if a request still holds it.\n"
"With no filter, every process is traced.\n"
"\n"
"Without --json a live table refreshes every interval, one row per\n"
"(process, ring, buffer index). At exit comes a leak report: buffers\n"
"registered and never used, buffers that outlived their unregister (and\n"
"by how long), and requests still holding a buffer when their process\n"
"exited. Tracing a bsteer instance (found from -p, or named with\n"
"--instance) also checks the kernel's use of each slot against bsteer's\n"
"own slot state; a disagreement is an error (exit status 1).\n"
"\n"
"OPTIONS:\n"
"  -p, --pid PID         trace this process and the children it forks\n"
"                        (repeatable)\n"
"  -c, --comm NAME       trace processes with this command name\n"
"      --no-follow       do not add children forked after the start\n"
"  -- COMMAND [ARGS]     run COMMAND, trace it and its children, stop when\n"
"                        it has exited and its rings are gone; the exit\n"
"                        status is then COMMAND's (128+N for signal N)\n"
"  -i, --instance NAME   cross-check against this bsteer instance\n"
"      --no-xcheck       do not look for a bsteer instance\n"
"  -j, --json            one JSON object per event, per line; the leak\n"
"                        report and a summary as the last lines\n"
"  -H, --hist            log2 histograms at exit: latency, bytes per use,\n"
"                        buffer lifetime\n"
"  -I, --interval SECS   refresh the table every SECS (default 1)\n"
"  -d, --duration SECS   stop after SECS\n"
"  -r, --rows N          rows in the table (default 20)\n"
"      --ringbuf MB      event ring buffer size (default 16)\n"
"  -v, --verbose         libbpf's messages\n"
"  -h, --help            this text\n"
"\n"
"EXAMPLES:\n"
"  bsteer trace -p $(pidof fio)              # live table of fio's buffers\n"
"  bsteer trace --json -- fio job.fio > ev.json  # every event of one run\n"
"  bsteer trace -p 1234 --hist -d 10         # histograms after 10 s\n"
"  bsteer trace -c qemu-system-x86 --json    # by name, as they start\n"
"  bsteer trace -p $(pidof bsteer) -i main   # with the slot cross-check\n";

static const struct option trace_opts[] = {
	{ "pid", required_argument, NULL, 'p' },
	{ "comm", required_argument, NULL, 'c' },
	{ "no-follow", no_argument, NULL, 'F' },
	{ "instance", required_argument, NULL, 'i' },
	{ "no-xcheck", no_argument, NULL, 'X' },
	{ "json", no_argument, NULL, 'j' },
	{ "hist", no_argument, NULL, 'H' },
	{ "interval", required_argument, NULL, 'I' },
	{ "duration", required_argument, NULL, 'd' },
	{ "rows", required_argument, NULL, 'r' },
	{ "ringbuf", required_argument, NULL, 'R' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct trace_args {
	struct bsteer_trace_opts o;
	int *pids, npids;		/* -p, in order */
	char inst[BSTEER_NAME_MAX + 1];	/* -i */
};

static int parse_secs(const char *s, double *out)
{
	char *end;

	*out = strtod(s, &end);
	return *end || *out <= 0 ? -EINVAL : 0;
}

/* A whole number in 1..@max, or -EINVAL. */
static int parse_count(const char *s, long max, long *out)
{
	char *end;

	*out = strtol(s, &end, 10);
	return *end || *out <= 0 || *out > max ? -EINVAL : 0;
}

/* -p: a process that exists, added to the filter. */
static int add_pid(struct trace_args *a, const char *arg)
{
	int *nv;
	long v;

	if (parse_count(arg, 0x7fffffff, &v)) {
		fprintf(stderr, "bsteer trace: bad pid '%s'\n", arg);
		return -2;
	}
	if (kill((int)v, 0) && errno == ESRCH) {
		fprintf(stderr, "bsteer trace: no process %ld\n", v);
		return -1;
	}
	nv = realloc(a->pids, sizeof(int) * (a->npids + 1));
	if (!nv)
		return -1;
	a->pids = nv;
	a->pids[a->npids++] = (int)v;
	return 0;
}

/* The options that take a number: -I, -d, -r, --ringbuf. */
static int number_option(struct trace_args *a, int opt, const char *arg)
{
	long v;

	switch (opt) {
	case 'I':
	case 'd':
		if (!parse_secs(arg, opt == 'I' ? &a->o.interval : &a->o.duration))
			return 0;
		fprintf(stderr, "bsteer trace: bad %s '%s' (seconds > 0)\n",
			opt == 'I' ? "interval" : "duration", arg);
		return -2;
	case 'r':
		if (parse_count(arg, 100000, &v)) {
			fprintf(stderr, "bsteer trace: bad row count '%s'\n", arg);
			return -2;
		}
		a->o.rows = (int)v;
		return 0;
	default:
		if (parse_count(arg, 1024, &v) || (v & (v - 1))) {
			fprintf(stderr, "bsteer trace: --ringbuf takes a power of two MiB up to 1024, not '%s'\n",
				arg);
			return -2;
		}
		a->o.tracer.ringbuf_mb = (unsigned int)v;
		return 0;
	}
}

/* One option: 0 to go on, 1 to stop with status 0, -1 with 1, -2 with 2. */
static int trace_option(struct trace_args *a, int opt, const char *arg)
{
	switch (opt) {
	case 'p':
		return add_pid(a, arg);
	case 'c':
		if (!*arg || strlen(arg) > 15) {
			fprintf(stderr, "bsteer trace: a command name has 1 to 15 characters, not '%s'\n",
				arg);
			return -2;
		}
		a->o.tracer.comm = arg;
		return 0;
	case 'F':
		a->o.tracer.follow_forks = false;
		return 0;
	case 'i':
		if (!bsteer_name_valid(arg)) {
			fprintf(stderr, "bsteer trace: invalid instance name '%s'\n", arg);
			return -2;
		}
		snprintf(a->inst, sizeof(a->inst), "%s", arg);
		return 0;
	case 'X':
		a->o.no_xcheck = true;
		return 0;
	case 'j':
		a->o.json = true;
		return 0;
	case 'H':
		a->o.hist = true;
		return 0;
	case 'I':
	case 'd':
	case 'r':
	case 'R':
		return number_option(a, opt, arg);
	case 'v':
		a->o.tracer.verbose = true;
		return 0;
	case 'h':
		fputs(trace_usage, stdout);
		return 1;
	default:
		fputs(trace_usage, stderr);
		return -2;
	}
}

/* The command line into @a, as trace_option() returns. */
static int trace_parse(struct trace_args *a, int argc, char **argv)
{
	int opt, rc;

	/* "+": the options end at COMMAND, whose own come after it. */
	while ((opt = getopt_long(argc, argv, "+p:c:i:jHI:d:r:vh", trace_opts, NULL)) != -1) {
		rc = trace_option(a, opt, optarg);
		if (rc)
			return rc;
	}
	if (optind < argc && (a->npids || a->o.tracer.comm)) {
		fprintf(stderr, "bsteer trace: a COMMAND cannot be combined with -p or -c\n");
		return -2;
	}
	if (optind < argc)
		a->o.argv = argv + optind;
	a->o.tracer.pids = a->pids;
	a->o.tracer.npids = a->npids;
	if (a->inst[0])
		a->o.instance = a->inst;
	return 0;
}

int cmd_trace(int argc, char **argv)
{
	struct trace_args a = {
		.o = {
			.tracer.follow_forks = true,
			.rows = 20,
			.interval = 1,
			.stop = &exiting,
			.on_attached = install_signals,
		},
	};
	int rc;

	rc = trace_parse(&a, argc, argv);
	if (rc)
		rc = rc == 1 ? 0 : rc == -2 ? 2 : 1;
	else if (bsteer_check_privileges("bsteer trace"))
		rc = 1;
	else
		rc = bsteer_trace_run(&a.o);
	free(a.pids);
	return rc;
}
