// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * bsteer trace: who holds which registered io_uring buffer, for how long,
 * and what leaked, for any process. Views: a live table (default), one
 * JSON event per line (--json), log2 histograms at exit (--hist), and a
 * leak report at exit. They live in user/trace/; this is the command line.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"
#include "trace/trace.h"

static const char trace_usage[] =
"USAGE: bsteer trace [-p PID[,PID...]]... [-c COMM] [OPTIONS] [-- COMMAND [ARGS...]]\n"
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
"  -p, --pid PID[,PID]   trace these processes and the children they fork\n"
"                        (repeatable; commas or spaces between PIDs, so\n"
"                        -p \"$(pidof fio)\" works)\n"
"  -c, --comm NAME       trace every process with this command name,\n"
"                        those that start later included\n"
"      --no-follow       do not add children forked after the start\n"
"  -- COMMAND [ARGS]     run COMMAND, trace it and its children, stop when\n"
"                        it has exited and its rings are gone; the exit\n"
"                        status is then COMMAND's (128+N for signal N)\n"
"  -i, --instance NAME   cross-check against this bsteer instance\n"
"      --no-xcheck       do not look for a bsteer instance\n"
"  -j, --json            one JSON object per event, per line; the leak\n"
"                        report and a summary as the last lines; COMMAND's\n"
"                        stdout goes to stderr, so the JSON can be piped\n"
"  -o, --output FILE     write the report (table, JSON, histograms) to FILE;\n"
"                        COMMAND keeps stdout\n"
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
"  bsteer trace -p \"$(pidof fio)\"            # live table of fio's buffers\n"
"  bsteer trace --json -- fio job.fio | jq -c 'select(.event == \"leak\")'\n"
"  bsteer trace -p \"$(pidof fio)\" -o ev.txt   # fio and its job processes\n"
"  bsteer trace -p 1234 --hist -d 10         # histograms after 10 s\n"
"  bsteer trace -c qemu-system-x86 --json    # by name, as they start\n"
"  bsteer trace -p \"$(pidof bsteer)\" -i main # with the slot cross-check\n";

static const struct option trace_opts[] = {
	{ "pid", required_argument, NULL, 'p' },
	{ "comm", required_argument, NULL, 'c' },
	{ "no-follow", no_argument, NULL, 'F' },
	{ "instance", required_argument, NULL, 'i' },
	{ "no-xcheck", no_argument, NULL, 'X' },
	{ "json", no_argument, NULL, 'j' },
	{ "output", required_argument, NULL, 'o' },
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
	const char *output;		/* -o */
};

/* -p: processes that exist, added to the filter; "1,2", "1 2" or "1". */
static int add_pids(struct trace_args *a, const char *arg)
{
	char buf[4096], *tok, *save;
	int *nv, n = 0;
	__u64 v;

	if (strlen(arg) >= sizeof(buf)) {
		fprintf(stderr, "bsteer trace: --pid: a list of %zu characters is too long\n",
			strlen(arg));
		return -2;
	}
	snprintf(buf, sizeof(buf), "%s", arg);
	for (tok = strtok_r(buf, ", \t\n", &save); tok; tok = strtok_r(NULL, ", \t\n", &save)) {
		if (cli_u64("trace", "--pid", tok, 1, 0x3fffffff, 0, &v))
			return -2;
		if (kill((int)v, 0) && errno == ESRCH) {
			fprintf(stderr, "bsteer trace: --pid: no process %llu\n",
				(unsigned long long)v);
			return -1;
		}
		nv = realloc(a->pids, sizeof(int) * (a->npids + 1));
		if (!nv)
			return -1;
		a->pids = nv;
		a->pids[a->npids++] = (int)v;
		n++;
	}
	if (!n) {
		return -cli_usage("trace", "--pid: '%s' names no process id", arg);
	}
	return 0;
}

/* The options that take a number: -I, -d, -r, --ringbuf. */
static int number_option(struct trace_args *a, int opt, const char *arg)
{
	__u64 v;

	switch (opt) {
	case 'I':
		return cli_secs("trace", "--interval", arg, 0.01, 3600, &a->o.interval) ? -2 : 0;
	case 'd':
		return cli_secs("trace", "--duration", arg, 0.01, 1e7, &a->o.duration) ? -2 : 0;
	case 'r':
		if (cli_u64("trace", "--rows", arg, 1, 100000, 0, &v))
			return -2;
		a->o.rows = (int)v;
		return 0;
	default:
		if (cli_u64("trace", "--ringbuf", arg, 1, 1024, 0, &v))
			return -2;
		if (v & (v - 1))
			return -cli_usage("trace", "--ringbuf: '%s' MiB is not a power of two", arg);
		a->o.tracer.ringbuf_mb = (unsigned int)v;
		return 0;
	}
}

/* One option: 0 to go on, 1 to stop with status 0, -1 with 1, -2 with 2. */
static int trace_option(struct trace_args *a, int opt, const char *arg)
{
	switch (opt) {
	case 'p':
		return add_pids(a, arg);
	case 'c':
		if (!*arg || strlen(arg) > 15)
			return -cli_usage("trace", "--comm: a command name has 1 to 15 characters, not '%s'",
					  arg);
		a->o.tracer.comm = arg;
		return 0;
	case 'F':
		a->o.tracer.follow_forks = false;
		return 0;
	case 'i':
		if (!bsteer_name_valid(arg))
			return -cli_usage("trace", "--instance: '%s' is not a valid name", arg);
		snprintf(a->inst, sizeof(a->inst), "%s", arg);
		return 0;
	case 'X':
		a->o.no_xcheck = true;
		return 0;
	case 'j':
		a->o.json = true;
		return 0;
	case 'o':
		if (!*arg)
			return -cli_usage("trace", "--output: an empty file name");
		a->output = arg;
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
		fprintf(stderr, "try 'bsteer trace --help'\n");
		return -2;
	}
}

static bool all_digits(char **w, int n)
{
	for (; n > 0; n--, w++)
		if (!**w || strspn(*w, "0123456789") != strlen(*w))
			return false;
	return true;
}

/* The command line into @a, as trace_option() returns. */
static int trace_parse(struct trace_args *a, int argc, char **argv)
{
	int opt, rc;

	/* "+": the options end at COMMAND, whose own come after it. */
	while ((opt = getopt_long(argc, argv, "+p:c:i:jo:HI:d:r:vh", trace_opts, NULL)) != -1) {
		if (opt == '?')
			return -cli_bad_option("trace", argv);
		rc = trace_option(a, opt, optarg);
		if (rc)
			return rc;
	}
	/*
	 * -p $(pidof fio), unquoted, with two PIDs: the words after the last
	 * -p that are all digits (and no "--" before them) are PIDs too.
	 */
	if (optind < argc && a->npids && strcmp(argv[optind - 1], "--") &&
	    all_digits(argv + optind, argc - optind)) {
		for (; optind < argc; optind++) {
			rc = add_pids(a, argv[optind]);
			if (rc)
				return rc;
		}
	}
	if (optind < argc && (a->npids || a->o.tracer.comm)) {
		return -cli_usage("trace", "a COMMAND cannot be combined with -p or -c");
	}
	if (optind < argc)
		a->o.argv = argv + optind;
	a->o.tracer.pids = a->pids;
	a->o.tracer.npids = a->npids;
	if (a->inst[0])
		a->o.instance = a->inst;
	return 0;
}

/*
 * Where the report and COMMAND's stdout go: with --output, the report to
 * FILE and COMMAND keeps our stdout; else with --json, COMMAND's stdout to
 * our stderr, so that stdout is JSON alone.
 */
static int trace_output(struct trace_args *a)
{
	int fd;

	if (!a->output) {
		if (a->o.json)
			a->o.command_stdout = STDERR_FILENO;
		return 0;
	}
	fd = open(a->output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "bsteer trace: --output: cannot write %s: %s\n", a->output,
			strerror(errno));
		return -1;
	}
	fflush(stdout);
	a->o.command_stdout = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
	if (a->o.command_stdout < 0 || dup2(fd, STDOUT_FILENO) < 0) {
		fprintf(stderr, "bsteer trace: --output: %s\n", strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
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

	a.o.command_stdout = -1;
	rc = trace_parse(&a, argc, argv);
	if (rc)
		rc = rc == 1 ? 0 : rc == -2 ? 2 : 1;
	else if (bsteer_check_privileges("bsteer trace") || trace_output(&a))
		rc = 1;
	else
		rc = bsteer_trace_run(&a.o);
	free(a.pids);
	return rc;
}
