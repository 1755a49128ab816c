// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* bsteer copy: check the input, open the outputs, run the copy job, report. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli/cli.h"

#define MAX_DST		8
#define DEF_SLOT	(256u << 10)
#define MAX_SLOT	(4u << 20)
#define DEF_DEPTH	16
#define MAX_DEPTH	(BSTEER_MAX_REQS - 2)	/* + the flush request */

static const char copy_usage[] =
"USAGE: bsteer copy SRC --to DST [--to DST ...] [OPTIONS]\n"
"\n"
"Copy SRC to every DST through the engine. Each chunk of SRC is read into a\n"
"borrowed buffer slot; the BPF policy, run at io_uring's completion hook,\n"
"fans the chunk out to the targets from that one slot (no copies).\n"
"SRC may be a regular file, a block device, a FIFO or '-' for stdin.\n"
"\n"
"OPTIONS:\n"
"  -t, --to DST          a target (repeat for a mirror; up to 8)\n"
"  -p, --policy P        passthrough, mirror, or a policy .bpf.o file\n"
"                        (default: passthrough for one target, else mirror)\n"
"  -s, --slot-size SIZE  bytes per slot, a multiple of 4096 (default 256K)\n"
"  -d, --depth N         chunks in flight (default 16)\n"
"  -i, --instance NAME   pin under /sys/fs/bpf/bsteer/NAME (default copy-PID)\n"
"      --fsync           flush every target through the policy at the end\n"
"      --direct          O_DIRECT on SRC and every DST (bypass the page\n"
"                        cache); SRC must be a file or block device whose\n"
"                        size is a multiple of 4096\n"
"      --no-hook         leave the completion hook detached (fallback only)\n"
"      --no-progress     no progress line, even on a terminal\n"
"  -j, --json            print the summary as one JSON object\n"
"  -v, --verbose         libbpf and executor diagnostics\n"
"  -h, --help            this text\n"
"\n"
"EXAMPLES:\n"
"  bsteer copy disk.img --to /backup/disk.img\n"
"  bsteer copy disk.img --to a.img --to b.img --policy mirror --json\n"
"  bsteer copy big.img --to out.img --slot-size 1M --depth 32 --fsync\n"
"  bsteer copy /dev/vdb --to /dev/vdc --to /dev/vdd --direct\n"
"  producer | bsteer copy - --to a.img --to b.img --instance live\n";

struct copy {
	struct bsteer_copy job;
	const char *src;
	const char *dst[MAX_DST];
	int ndst;
	int src_fd;
	int dst_fd[MAX_DST];
	const char *policy;
	char name[BSTEER_NAME_MAX + 1];
	__u64 slot_size, depth;
	bool json, fsync_end, no_progress, direct;
	struct bsteer_instance_opts io;
};

static void show_progress(const struct bsteer_copy *j, bool final)
{
	double secs = (bsteer_now_ns() - j->t0) / 1e9;
	char done[32], total[32];

	bsteer_human_bytes(j->done_bytes, done, sizeof(done));
	if (j->stream) {
		fprintf(stderr, "\rcopied %s at %.1f MiB/s   ", done,
			secs > 0 ? j->done_bytes / secs / 1048576 : 0);
	} else {
		bsteer_human_bytes(j->size, total, sizeof(total));
		fprintf(stderr, "\rcopied %s of %s (%3.0f%%) at %.1f MiB/s   ",
			done, total,
			j->size ? 100.0 * j->done_bytes / j->size : 100.0,
			secs > 0 ? j->done_bytes / secs / 1048576 : 0);
	}
	if (final)
		fputc('\n', stderr);
}

static void report(struct copy *c, bool json, const char *policy, bool fsync_end,
		   bool direct)
{
	struct bsteer_instance *in = c->job.in;
	__u64 *st = in->stats;
	double secs = (bsteer_now_ns() - c->job.t0) / 1e9;
	__u64 hook = st[BSTEER_ST_DEC_HOOK], fb = st[BSTEER_ST_DEC_FALLBACK];
	double ratio = hook + fb ? (double)hook / (hook + fb) : 0;
	__u32 leaked = bsteer_slots_leaked(c->job.e);
	int i;

	if (json) {
		struct bsteer_json j;

		json_begin(&j, stdout);
		json_str(&j, "src", c->src);
		json_str(&j, "policy", policy);
		json_str(&j, "instance", in->name);
		json_bool(&j, "ok", !c->job.error && !exiting);
		if (c->job.error)
			json_str(&j, "error", strerror(-c->job.error));
		json_u64(&j, "bytes", c->job.done_bytes);
		json_dbl(&j, "seconds", secs);
		json_dbl(&j, "mib_per_s", secs > 0 ? c->job.done_bytes / secs / 1048576 : 0);
		json_u64(&j, "slot_size", c->job.slot_size);
		json_u64(&j, "depth", c->depth);
		json_bool(&j, "fsync", fsync_end);
		json_bool(&j, "direct", direct);
		json_u64(&j, "decisions_hook", hook);
		json_u64(&j, "decisions_fallback", fb);
		json_dbl(&j, "hook_ratio", ratio);
		json_u64(&j, "fallback_runs", st[BSTEER_ST_FALLBACK_RUNS]);
		json_u64(&j, "decisions_rejected", st[BSTEER_ST_DEC_REJECTED]);
		json_u64(&j, "decisions_stale", st[BSTEER_ST_DEC_STALE]);
		json_u64(&j, "decisions_missing", st[BSTEER_ST_DEC_MISSING]);
		json_u64(&j, "slots_leaked", leaked);
		json_u64(&j, "violations", st[BSTEER_ST_VIOLATIONS]);
		json_u64(&j, "foreign_completions", st[BSTEER_ST_FOREIGN]);
		json_u64(&j, "kernel_fixed_ops", st[BSTEER_ST_KOPS]);
		json_u64(&j, "ops_submitted", st[BSTEER_ST_OPS_SUBMITTED]);
		json_u64(&j, "ops_short", st[BSTEER_ST_OPS_SHORT]);
		json_u64(&j, "ops_errors", st[BSTEER_ST_OPS_ERRORS]);
		json_arr(&j, "targets");
		for (i = 0; i < c->ndst; i++) {
			json_obj(&j, NULL);
			json_str(&j, "path", c->dst[i]);
			json_u64(&j, "ops", in->targets[i].ops);
			json_u64(&j, "bytes", in->targets[i].bytes);
			json_u64(&j, "errors", in->targets[i].errors);
			json_bool(&j, "failed", in->targets[i].flags & BSTEER_TGT_FAILED);
			json_end_obj(&j);
		}
		json_end_arr(&j);
		json_finish(&j);
		return;
	}
	{
		char b[32];

		bsteer_human_bytes(c->job.done_bytes, b, sizeof(b));
		printf("copied %s in %.3f s (%.1f MiB/s) with policy %s\n", b,
		       secs, secs > 0 ? c->job.done_bytes / secs / 1048576 : 0, policy);
	}
	printf("decisions: %llu by the completion hook, %llu by the fallback (%.2f%% hook)\n",
	       (unsigned long long)hook, (unsigned long long)fb, 100 * ratio);
	printf("rejected %llu, stale %llu, missing %llu; slots leaked %u; "
	       "violations %llu; foreign-context completions %llu\n",
	       (unsigned long long)st[BSTEER_ST_DEC_REJECTED],
	       (unsigned long long)st[BSTEER_ST_DEC_STALE],
	       (unsigned long long)st[BSTEER_ST_DEC_MISSING], leaked,
	       (unsigned long long)st[BSTEER_ST_VIOLATIONS],
	       (unsigned long long)st[BSTEER_ST_FOREIGN]);
	printf("%-4s %-10s %-14s %-8s %s\n", "TGT", "OPS", "BYTES", "ERRORS", "PATH");
	for (i = 0; i < c->ndst; i++)
		printf("%-4d %-10llu %-14llu %-8llu %s%s\n", i,
		       (unsigned long long)in->targets[i].ops,
		       (unsigned long long)in->targets[i].bytes,
		       (unsigned long long)in->targets[i].errors, c->dst[i],
		       in->targets[i].flags & BSTEER_TGT_FAILED ? " (failed)" : "");
	if (c->job.error)
		printf("error: %s\n", strerror(-c->job.error));
}

/* All input checks happen here, before any output is opened. */
static int check_args(struct copy *c, __u64 slot_size, __u64 depth)
{
	struct stat ss, ds;
	int i, k;

	(void)slot_size;	/* checked as options (copy_option) */
	(void)depth;
	if (!strcmp(c->src, "-")) {
		if (fstat(0, &ss)) {
			fprintf(stderr, "bsteer copy: cannot stat stdin: %s\n",
				strerror(errno));
			return -errno;
		}
	} else if (stat(c->src, &ss)) {
		fprintf(stderr, "bsteer copy: cannot read %s: %s\n", c->src,
			strerror(errno));
		return -errno;
	}
	if (S_ISDIR(ss.st_mode)) {
		fprintf(stderr, "bsteer copy: %s is a directory\n", c->src);
		return -EISDIR;
	}
	for (i = 0; i < c->ndst; i++) {
		for (k = 0; k < i; k++) {
			if (!strcmp(c->dst[i], c->dst[k])) {
				fprintf(stderr, "bsteer copy: target %s given twice\n",
					c->dst[i]);
				return -EINVAL;
			}
		}
		if (stat(c->dst[i], &ds))
			continue;
		if (S_ISDIR(ds.st_mode)) {
			fprintf(stderr, "bsteer copy: target %s is a directory\n",
				c->dst[i]);
			return -EISDIR;
		}
		if (ds.st_dev == ss.st_dev && ds.st_ino == ss.st_ino) {
			fprintf(stderr, "bsteer copy: target %s is the source\n",
				c->dst[i]);
			return -EINVAL;
		}
	}
	return 0;
}

static int open_src(struct copy *c, bool direct)
{
	int flags = O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0);
	struct stat st;

	c->src_fd = strcmp(c->src, "-") ? open(c->src, flags) : dup(0);
	if (c->src_fd < 0 || fstat(c->src_fd, &st)) {
		fprintf(stderr, "bsteer copy: cannot open %s%s: %s\n", c->src,
			direct ? " with O_DIRECT" : "", strerror(errno));
		return -errno;
	}
	if (direct && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		fprintf(stderr, "bsteer copy: --direct needs SRC to be a file or a block device\n");
		return -EINVAL;
	}
	if (S_ISREG(st.st_mode)) {
		c->job.size = st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(c->src_fd, 0, SEEK_END);

		if (end < 0)
			return -errno;
		c->job.size = end;
	} else {
		c->job.stream = true;
	}
	/* Every transfer is then whole blocks, which O_DIRECT needs. */
	if (direct && c->job.size % 4096) {
		fprintf(stderr, "bsteer copy: --direct needs a size that is a multiple of 4096 (%s is %llu bytes)\n",
			c->src, (unsigned long long)c->job.size);
		return -EINVAL;
	}
	return 0;
}

/* One option: 0 to go on, 1 to stop with status 0, -1 with 1, -2 with 2. */
static int copy_option(struct copy *c, int opt, const char *arg)
{
	switch (opt) {
	case 't':
		if (c->ndst == MAX_DST)
			return -cli_usage("copy", "--to: at most %d targets", MAX_DST);
		if (!*arg)
			return -cli_usage("copy", "--to: an empty file name");
		c->dst[c->ndst++] = arg;
		return 0;
	case 'p':
		if (!*arg)
			return -cli_usage("copy", "--policy: an empty policy name");
		c->policy = arg;
		return 0;
	case 's':
		if (cli_u64("copy", "--slot-size", arg, 4096, MAX_SLOT, CLI_SIZE, &c->slot_size))
			return -2;
		if (c->slot_size % 4096)
			return -cli_usage("copy", "--slot-size: '%s' is not a multiple of 4096", arg);
		return 0;
	case 'd':
		return cli_u64("copy", "--depth", arg, 1, MAX_DEPTH, 0, &c->depth) ? -2 : 0;
	case 'i':
		snprintf(c->name, sizeof(c->name), "%s", arg);
		if (bsteer_name_valid(arg))
			return 0;
		return -cli_usage("copy", "--instance: '%s' is not a valid name (1..%d of A-Z a-z 0-9 . _ -)",
				  arg, BSTEER_NAME_MAX);
	case 'F':
		c->fsync_end = true;
		return 0;
	case 'D':
		c->direct = true;
		return 0;
	case 'N':
		c->io.no_complete_hook = true;
		return 0;
	case 'P':
		c->no_progress = true;
		return 0;
	case 'j':
		c->json = true;
		return 0;
	case 'v':
		c->io.verbose = true;
		return 0;
	case 'h':
		fputs(copy_usage, stdout);
		return 1;
	default:
		fputs(copy_usage, stderr);
		return -2;
	}
}

static int copy_parse(struct copy *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "policy", required_argument, NULL, 'p' },
		{ "slot-size", required_argument, NULL, 's' },
		{ "depth", required_argument, NULL, 'd' },
		{ "instance", required_argument, NULL, 'i' },
		{ "fsync", no_argument, NULL, 'F' },
		{ "direct", no_argument, NULL, 'D' },
		{ "no-hook", no_argument, NULL, 'N' },
		{ "no-progress", no_argument, NULL, 'P' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "t:p:s:d:i:jvh", opts, NULL)) != -1) {
		if (opt == '?')
			return -cli_bad_option("copy", argv);
		rc = copy_option(c, opt, optarg);
		if (rc)
			return rc;
	}
	if (optind < argc)
		c->src = argv[optind++];
	if (optind < argc)
		return -cli_usage("copy", "unexpected argument '%s'", argv[optind]);
	if (!c->src)
		return -cli_usage("copy", "which SRC?");
	if (!c->ndst)
		return -cli_usage("copy", "no target given (--to DST)");
	return 0;
}

/* The instance and its engine, then (only now) the outputs, truncated. */
static int copy_setup(struct copy *c)
{
	struct bsteer_instance_opts *io = &c->io;
	int err, i;

	io->kind = "copy";
	io->nrings = 1;
	io->name = c->name;
	io->policy = c->policy;
	io->nslots = c->depth;
	io->slot_size = c->slot_size;
	io->nreqs = c->depth + 2;
	io->ntargets = c->ndst;
	c->job.in = bsteer_instance_open(io, &err);
	if (c->job.in)
		c->job.e = bsteer_engine_new(c->job.in, 0,
					     &(struct bsteer_engine_opts){
						.verbose = io->verbose },
					     &err);
	if (!c->job.e) {
		fprintf(stderr, "bsteer copy: %s\n", bsteer_errbuf());
		return -1;
	}
	for (i = 0; i < c->ndst; i++) {
		c->dst_fd[i] = open(c->dst[i], O_WRONLY | O_CREAT | O_TRUNC |
					       O_CLOEXEC | (c->direct ? O_DIRECT : 0),
				    0644);
		if (c->dst_fd[i] < 0) {
			fprintf(stderr, "bsteer copy: cannot open %s%s: %s\n",
				c->dst[i], c->direct ? " with O_DIRECT" : "",
				strerror(errno));
			return -1;
		}
	}
	if (bsteer_engine_files(c->job.e, c->dst_fd, c->ndst, &c->src_fd, 1)) {
		fprintf(stderr, "bsteer copy: %s\n", bsteer_errbuf());
		return -1;
	}
	return 0;
}

/* Run the job, say how it went; the exit status. */
static int copy_run(struct copy *c)
{
	struct bsteer_copy *j = &c->job;
	char pname[64];
	int err;

	j->slot_size = c->slot_size;
	j->stop = (volatile int *)&exiting;
	j->progress = !c->no_progress && isatty(2) ? show_progress : NULL;
	err = bsteer_copy_run(j, c->fsync_end);
	if (err) {
		fprintf(stderr, "bsteer copy: engine failed: %s\n", strerror(-err));
		return 1;
	}
	if (j->stalled)
		fprintf(stderr, "bsteer copy: %s\n", bsteer_errbuf());
	if (!j->error && !exiting && !j->stream && j->done_bytes != j->size) {
		fprintf(stderr, "bsteer copy: copied %llu of %llu bytes\n",
			(unsigned long long)j->done_bytes,
			(unsigned long long)j->size);
		j->error = -EIO;
	}
	if (j->error)
		fprintf(stderr, "bsteer copy: copy failed: %s\n", strerror(-j->error));
	else if (exiting)
		fprintf(stderr, "bsteer copy: interrupted after %llu bytes\n",
			(unsigned long long)j->done_bytes);
	bsteer_policy_name(c->policy, pname, sizeof(pname));
	report(c, c->json, pname, c->fsync_end, c->direct);
	return j->error || exiting ? 1 : 0;
}

int cmd_copy(int argc, char **argv)
{
	struct copy *c = calloc(1, sizeof(*c));
	int i, rc = 1;

	if (!c)
		return 1;
	c->src_fd = -1;
	for (i = 0; i < MAX_DST; i++)
		c->dst_fd[i] = -1;
	c->slot_size = DEF_SLOT;
	c->depth = DEF_DEPTH;
	snprintf(c->name, sizeof(c->name), "copy-%d", getpid());
	rc = copy_parse(c, argc, argv);
	if (rc) {
		rc = rc == 1 ? 0 : rc == -2 ? 2 : 1;
		goto out;
	}
	rc = 1;
	if (check_args(c, c->slot_size, c->depth) ||
	    bsteer_check_privileges("bsteer copy"))
		goto out;
	if (!c->policy)
		c->policy = c->ndst > 1 ? "mirror" : "passthrough";
	if (open_src(c, c->direct))
		goto out;
	/* Before anything is pinned, so a signal always leads to cleanup. */
	install_signals();
	if (!copy_setup(c))
		rc = copy_run(c);
out:
	bsteer_engine_free(c->job.e);
	bsteer_instance_close(c->job.in);
	for (i = 0; i < MAX_DST; i++)
		if (c->dst_fd[i] >= 0)
			close(c->dst_fd[i]);
	if (c->src_fd >= 0)
		close(c->src_fd);
	free(c);
	return rc;
}
