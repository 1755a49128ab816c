// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * bsteer copy: read SRC chunk by chunk into borrowed slots; the policy, at
 * the completion hook, fans each chunk out to the targets with WRITE_FIXED
 * from that same slot.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli/cli.h"
#include "libbsteer.h"

#define MAX_DST		8
#define DEF_SLOT	(256u << 10)
#define MAX_SLOT	(4u << 20)
#define DEF_DEPTH	16
#define MAX_DEPTH	(BSTEER_MAX_REQS - 2)	/* + the flush request */

volatile sig_atomic_t exiting;

static void on_signal(int sig)
{
	(void)sig;
	exiting = 1;
}

void install_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* A peer that goes away is an error on that write, not our end. */
	signal(SIGPIPE, SIG_IGN);
}

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
	struct bsteer_engine e;
	struct bsteer_instance *in;
	const char *src;
	const char *dst[MAX_DST];
	int ndst;
	int src_fd;
	int dst_fd[MAX_DST];
	bool stream;		/* SRC has no size: read in order until EOF */
	__u64 size;		/* bytes to copy (regular file or device) */
	__u64 next_off;		/* next chunk to start */
	__u64 done_bytes;
	__u32 slot_size;
	__u32 depth;
	bool eof;
	bool flushed;
	int error;		/* first failed chunk */
	__u32 stream_req;	/* request whose read is outstanding */
	bool stream_busy;
	__u64 t0, t_last;
	bool progress;
};

static void chunk_done(void *arg, struct bsteer_engine *e, __u32 r, int err)
{
	struct copy *c = arg;
	struct bsteer_req *rq = &e->in->reqs[r];

	if (rq->type == BSTEER_REQ_FLUSH) {
		c->flushed = true;
		if (err && !c->error)
			c->error = err;
		return;
	}
	if (err) {
		if (!c->error)
			c->error = err;
		return;
	}
	c->done_bytes += rq->len;
}

/* Is the outstanding stream read finished, and did it hit EOF? */
static void stream_check(struct copy *c)
{
	struct bsteer_req *rq;
	struct bsteer_req_op *o;
	bool reading = false;
	int i;

	if (!c->stream_busy)
		return;
	rq = &c->in->reqs[c->stream_req];
	for (i = 0; i < BSTEER_REQ_OPS; i++) {
		o = &rq->ops[i];
		if (rq->state == BSTEER_RQ_ACTIVE &&
		    o->state == BSTEER_OPS_INFLIGHT &&
		    (o->flags & BSTEER_OPF_FRONTEND))
			reading = true;
	}
	if (reading)
		return;
	c->stream_busy = false;
	if (rq->len < c->slot_size)
		c->eof = true;
}

static int start_chunk(struct copy *c)
{
	__u32 r, slot, len;
	__u64 off;
	int err;

	len = c->slot_size;
	if (!c->stream && c->size - c->next_off < len)
		len = c->size - c->next_off;
	err = bsteer_req_alloc(&c->e, BSTEER_REQ_WRITE, c->next_off, len, &r);
	if (err)
		return err;
	err = bsteer_slot_lease(&c->e, r, &slot);
	if (err) {
		/* Give the request back; its record was never used. */
		bsteer_req_abandon(&c->e, r);
		return err;
	}
	off = c->stream ? BSTEER_OFF_STREAM : c->next_off;
	err = bsteer_frontend_op(&c->e, r, BSTEER_OP_READ,
				 BSTEER_FRONTEND_FILE(0), slot, len, off);
	if (err)
		return err;
	c->next_off += len;
	if (c->stream) {
		c->stream_req = r;
		c->stream_busy = true;
	}
	return 0;
}

static bool more_to_read(struct copy *c)
{
	if (c->error || exiting)
		return false;
	if (c->stream)
		return !c->eof && !c->stream_busy;
	return c->next_off < c->size;
}

static void show_progress(struct copy *c, bool final)
{
	__u64 now = bsteer_now_ns();
	double secs = (now - c->t0) / 1e9;
	char done[32], total[32];

	if (!c->progress || (!final && now - c->t_last < 250000000ull))
		return;
	c->t_last = now;
	bsteer_human_bytes(c->done_bytes, done, sizeof(done));
	if (c->stream) {
		fprintf(stderr, "\rcopied %s at %.1f MiB/s   ", done,
			secs > 0 ? c->done_bytes / secs / 1048576 : 0);
	} else {
		bsteer_human_bytes(c->size, total, sizeof(total));
		fprintf(stderr, "\rcopied %s of %s (%3.0f%%) at %.1f MiB/s   ",
			done, total,
			c->size ? 100.0 * c->done_bytes / c->size : 100.0,
			secs > 0 ? c->done_bytes / secs / 1048576 : 0);
	}
	if (final)
		fputc('\n', stderr);
}

static int run_copy(struct copy *c, bool fsync_end)
{
	int err = 0;

	while (1) {
		while (more_to_read(c) && bsteer_slots_free(&c->e) &&
		       bsteer_reqs_free(&c->e) > 1) {
			err = start_chunk(c);
			if (err == -ENOBUFS)
				break;	/* a slot's last completion is unreaped */
			if (err)
				return err;
		}
		if (!bsteer_engine_busy(&c->e)) {
			/*
			 * Nothing in flight and nothing could start: slots or
			 * requests were lost (a broken policy). Stop, loudly.
			 */
			if (more_to_read(c)) {
				fprintf(stderr, "bsteer copy: stalled: %u slots and %u requests free, nothing in flight\n",
					bsteer_slots_free(&c->e),
					bsteer_reqs_free(&c->e));
				c->error = -EIO;
			}
			break;
		}
		err = bsteer_engine_run(&c->e, 1);
		if (err && err != -EINTR)
			return err;
		stream_check(c);
		show_progress(c, false);
	}
	if (fsync_end && !c->error && !exiting) {
		__u32 r;

		err = bsteer_req_alloc(&c->e, BSTEER_REQ_FLUSH, 0, 0, &r);
		if (!err)
			err = bsteer_frontend_op(&c->e, r, BSTEER_OP_NOP, 0,
						 BSTEER_NO_SLOT, 0, 0);
		while (!err && bsteer_engine_busy(&c->e))
			err = bsteer_engine_run(&c->e, 1);
		if (err == -EINTR)
			err = 0;
	}
	show_progress(c, true);
	return err;
}

static void report(struct copy *c, bool json, const char *policy, bool fsync_end,
		   bool direct)
{
	struct bsteer_instance *in = c->in;
	__u64 *st = in->stats;
	double secs = (bsteer_now_ns() - c->t0) / 1e9;
	__u64 hook = st[BSTEER_ST_DEC_HOOK], fb = st[BSTEER_ST_DEC_FALLBACK];
	double ratio = hook + fb ? (double)hook / (hook + fb) : 0;
	__u32 leaked = bsteer_slots_leaked(&c->e);
	int i;

	if (json) {
		struct bsteer_json j;

		json_begin(&j, stdout);
		json_str(&j, "src", c->src);
		json_str(&j, "policy", policy);
		json_str(&j, "instance", in->name);
		json_bool(&j, "ok", !c->error && !exiting);
		if (c->error)
			json_str(&j, "error", strerror(-c->error));
		json_u64(&j, "bytes", c->done_bytes);
		json_dbl(&j, "seconds", secs);
		json_dbl(&j, "mib_per_s", secs > 0 ? c->done_bytes / secs / 1048576 : 0);
		json_u64(&j, "slot_size", c->slot_size);
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

		bsteer_human_bytes(c->done_bytes, b, sizeof(b));
		printf("copied %s in %.3f s (%.1f MiB/s) with policy %s\n", b,
		       secs, secs > 0 ? c->done_bytes / secs / 1048576 : 0, policy);
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
	if (c->error)
		printf("error: %s\n", strerror(-c->error));
}

/* All input checks happen here, before any output is opened. */
static int check_args(struct copy *c, __u64 slot_size, __u64 depth)
{
	struct stat ss, ds;
	int i, k;

	if (!c->src) {
		fprintf(stderr, "bsteer copy: missing SRC\n%s", copy_usage);
		return -EINVAL;
	}
	if (!c->ndst) {
		fprintf(stderr, "bsteer copy: no target given (use --to DST)\n");
		return -EINVAL;
	}
	if (!slot_size || slot_size % 4096 || slot_size > MAX_SLOT) {
		fprintf(stderr, "bsteer copy: slot size %llu must be a non-zero multiple of 4096, at most %u\n",
			(unsigned long long)slot_size, MAX_SLOT);
		return -EINVAL;
	}
	if (!depth || depth > MAX_DEPTH) {
		fprintf(stderr, "bsteer copy: depth %llu must be 1..%u\n",
			(unsigned long long)depth, MAX_DEPTH);
		return -EINVAL;
	}
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
		c->size = st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(c->src_fd, 0, SEEK_END);

		if (end < 0)
			return -errno;
		c->size = end;
	} else {
		c->stream = true;
	}
	/* Every transfer is then whole blocks, which O_DIRECT needs. */
	if (direct && c->size % 4096) {
		fprintf(stderr, "bsteer copy: --direct needs a size that is a multiple of 4096 (%s is %llu bytes)\n",
			c->src, (unsigned long long)c->size);
		return -EINVAL;
	}
	return 0;
}

int cmd_copy(int argc, char **argv)
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
	struct bsteer_instance_opts io = { .kind = "copy", .nrings = 1 };
	struct bsteer_frontend_cb cb = { .complete = chunk_done };
	struct copy *c;
	__u64 slot_size = DEF_SLOT, depth = DEF_DEPTH;
	const char *policy = NULL;
	char name[BSTEER_NAME_MAX + 1], pname[64];
	bool json = false, fsync_end = false, no_progress = false, direct = false;
	int opt, err, i, rc = 1;

	c = calloc(1, sizeof(*c));
	if (!c)
		return 1;
	c->src_fd = -1;
	for (i = 0; i < MAX_DST; i++)
		c->dst_fd[i] = -1;
	snprintf(name, sizeof(name), "copy-%d", getpid());
	while ((opt = getopt_long(argc, argv, "t:p:s:d:i:jvh", opts, NULL)) != -1) {
		switch (opt) {
		case 't':
			if (c->ndst == MAX_DST) {
				fprintf(stderr, "bsteer copy: at most %d targets\n",
					MAX_DST);
				goto out;
			}
			c->dst[c->ndst++] = optarg;
			break;
		case 'p':
			policy = optarg;
			break;
		case 's':
			if (bsteer_parse_size(optarg, &slot_size)) {
				fprintf(stderr, "bsteer copy: bad slot size '%s'\n",
					optarg);
				goto out;
			}
			break;
		case 'd':
			if (bsteer_parse_size(optarg, &depth)) {
				fprintf(stderr, "bsteer copy: bad depth '%s'\n", optarg);
				goto out;
			}
			break;
		case 'i':
			snprintf(name, sizeof(name), "%s", optarg);
			if (!bsteer_name_valid(optarg)) {
				fprintf(stderr, "bsteer copy: invalid instance name '%s'\n",
					optarg);
				goto out;
			}
			break;
		case 'F':
			fsync_end = true;
			break;
		case 'D':
			direct = true;
			break;
		case 'N':
			io.no_complete_hook = true;
			break;
		case 'P':
			no_progress = true;
			break;
		case 'j':
			json = true;
			break;
		case 'v':
			io.verbose = true;
			break;
		case 'h':
			fputs(copy_usage, stdout);
			rc = 0;
			goto out;
		default:
			fputs(copy_usage, stderr);
			rc = 2;
			goto out;
		}
	}
	if (optind < argc)
		c->src = argv[optind++];
	if (optind < argc) {
		fprintf(stderr, "bsteer copy: unexpected argument '%s'\n", argv[optind]);
		goto out;
	}
	if (check_args(c, slot_size, depth) || bsteer_check_privileges("bsteer copy"))
		goto out;
	if (!policy)
		policy = c->ndst > 1 ? "mirror" : "passthrough";
	c->slot_size = slot_size;
	c->depth = depth;
	if (open_src(c, direct))
		goto out;

	/* Before anything is pinned, so a signal always leads to cleanup. */
	install_signals();
	io.name = name;
	io.policy = policy;
	io.nslots = depth;
	io.slot_size = slot_size;
	io.nreqs = depth + 2;
	io.ntargets = c->ndst;
	c->in = bsteer_instance_open(&io, &err);
	if (!c->in) {
		fprintf(stderr, "bsteer copy: %s\n", bsteer_errbuf());
		goto out;
	}
	err = bsteer_engine_init(&c->e, c->in, 0, &cb);
	if (err) {
		fprintf(stderr, "bsteer copy: %s\n", bsteer_errbuf());
		goto out;
	}
	c->e.cb.arg = c;
	c->e.verbose = io.verbose;

	/* Only now, with everything checked and loaded, touch the outputs. */
	for (i = 0; i < c->ndst; i++) {
		c->dst_fd[i] = open(c->dst[i], O_WRONLY | O_CREAT | O_TRUNC |
					       O_CLOEXEC | (direct ? O_DIRECT : 0),
				    0644);
		if (c->dst_fd[i] < 0) {
			fprintf(stderr, "bsteer copy: cannot open %s%s: %s\n",
				c->dst[i], direct ? " with O_DIRECT" : "",
				strerror(errno));
			goto out;
		}
	}
	err = bsteer_engine_files(&c->e, c->dst_fd, c->ndst, &c->src_fd, 1);
	if (err) {
		fprintf(stderr, "bsteer copy: %s\n", bsteer_errbuf());
		goto out;
	}

	c->progress = !no_progress && isatty(2);
	c->t0 = c->t_last = bsteer_now_ns();
	err = run_copy(c, fsync_end);
	if (err) {
		fprintf(stderr, "bsteer copy: engine failed: %s\n", strerror(-err));
		goto out;
	}
	if (!c->error && !exiting && !c->stream && c->done_bytes != c->size) {
		fprintf(stderr, "bsteer copy: copied %llu of %llu bytes\n",
			(unsigned long long)c->done_bytes,
			(unsigned long long)c->size);
		c->error = -EIO;
	}
	if (c->error)
		fprintf(stderr, "bsteer copy: copy failed: %s\n",
			strerror(-c->error));
	else if (exiting)
		fprintf(stderr, "bsteer copy: interrupted after %llu bytes\n",
			(unsigned long long)c->done_bytes);
	bsteer_policy_name(policy, pname, sizeof(pname));
	report(c, json, pname, fsync_end, direct);
	rc = c->error || exiting ? 1 : 0;
out:
	if (c->in)
		bsteer_engine_fini(&c->e);
	bsteer_instance_close(c->in);
	for (i = 0; i < MAX_DST; i++)
		if (c->dst_fd[i] >= 0)
			close(c->dst_fd[i]);
	if (c->src_fd >= 0)
		close(c->src_fd);
	free(c);
	return rc;
}
