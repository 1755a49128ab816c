// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * hookbench: what one policy decision costs, made by the completion hook
 * or by the BPF_PROG_RUN fallback, against a plain io_uring NOP baseline,
 * all from one run so the numbers share a machine state.
 *
 * Every bsteer request here is a BSTEER_REQ_NONE with one frontend NOP.
 * Its CQE is the only event of the request; passthrough answers it with a
 * decision that has no ops and completes the request with -EOPNOTSUPP. So
 * one request is one NOP plus one decision plus the engine's bookkeeping,
 * and the NOP baseline is subtracted to show the rest.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/utsname.h>
#include "libbsteer.h"

#define BATCH		BSTEER_BATCH	/* one fallback run's worth */
#define NSLOTS		64		/* unused by NOPs; the minimum sensible */
#define SLOT_SIZE	4096
#define NREQS		128		/* two batches, so a batch never waits */
#define RING_ENTRIES	256		/* the engine's own ring sizes */
#define RING_CQ		4096
#define DEF_ITERS	200000ull
#define MAX_ITERS	1000000000ull
#define MAX_ROUNDS	1000
#define MAX_WARMUP	1024ull

static const char usage[] =
"USAGE: hookbench [OPTIONS]\n"
"\n"
"Measure the cost of one bsteer policy decision, per path, in one run:\n"
"  nop         plain io_uring NOPs in batches of 64 (SINGLE_ISSUER|\n"
"              DEFER_TASKRUN), with no bsteer instance loaded: the baseline\n"
"  foreign     the same NOPs on the same ring while an instance with its\n"
"              hooks is loaded: what bsteer costs other programs' rings\n"
"              (its issue and completion hooks run, and filter them out)\n"
"  hook        bsteer requests decided by the completion hook (the tail\n"
"              call into the passthrough policy inside io_uring_enter)\n"
"  fallback64  the same with the completion hook detached: the engine runs\n"
"              the policy's syscall twin with BPF_PROG_RUN, 64 per run\n"
"  fallback1   as fallback64, one request at a time: one run per decision\n"
"\n"
"Each bsteer request is one NOP whose completion the passthrough policy\n"
"answers (type NONE: completed with -EOPNOTSUPP, no ops). NS/DECISION is\n"
"wall time (CLOCK_MONOTONIC) over requests: the NOP, the decision and the\n"
"engine's bookkeeping. DELTA_VS_NOP is a mode's median minus nop's.\n"
"Modes run interleaved, nop foreign hook fallback64 fallback1, once per round;\n"
"each round loads a fresh instance (hookbench-PID-hook, then\n"
"hookbench-PID-fb) and removes it again. The decision counters of the\n"
"instance confirm which path decided. Needs root and bpffs.\n"
"\n"
"OPTIONS:\n"
"  -n, --iters N     requests per round for nop, hook and fallback64\n"
"                    (default 200000); fallback1 runs N/10\n"
"  -r, --rounds R    rounds (default 3, at most 1000); the median, min and\n"
"                    max are over rounds\n"
"  -c, --cpu CPU     pin the benchmark to CPU first (default: no pinning)\n"
"  -j, --json        print one JSON object instead of the tables\n"
"  -h, --help        this text\n"
"\n"
"EXAMPLES:\n"
"  hookbench\n"
"  hookbench --iters 50000 --rounds 5\n"
"  hookbench --json --iters 20000 --rounds 1 --cpu 1\n"
"  bench/hooks.sh --iters 50000 --rounds 3    (builds, mounts bpffs, runs)\n";

enum mode {
	M_NOP,
	M_FOREIGN,
	M_HOOK,
	M_FB64,
	M_FB1,
	M__MAX,
};

static const char *const mode_names[M__MAX] = {
	[M_NOP]		= "nop",
	[M_FOREIGN]	= "foreign",
	[M_HOOK]	= "hook",
	[M_FB64]	= "fallback64",
	[M_FB1]		= "fallback1",
};

struct result {
	__u64 reqs;		/* requests per round */
	__u32 batch;
	double *ns;		/* ns per decision, one per round */
	double med, min, max;
	/* Instance counters over the timed part of every round. */
	__u64 dec_hook;
	__u64 dec_fb;
	__u64 fb_runs;
	__u64 completed;	/* requests the engine completed */
	__u64 unexpected;	/* ... with a result other than -EOPNOTSUPP */
	__u64 anomalies;	/* rejected, stale or missing decisions */
	bool ok;
};

struct bench {
	struct bsteer_instance *in;
	struct bsteer_engine *e;
	int owner;
	bool engine_ok;
	char name[BSTEER_NAME_MAX + 1];
	int null_fd;
	__u64 completed;
	__u64 unexpected;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* No SA_RESTART: a signal must get us out of io_uring_enter to clean up. */
static void install_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

static __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int parse_u64(const char *s, __u64 lo, __u64 hi, __u64 *out)
{
	unsigned long long v;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void summarize(struct result *r, __u32 rounds)
{
	double *s = malloc(rounds * sizeof(*s));
	__u32 i;

	if (!s) {
		r->med = r->min = r->max = r->ns[0];
		return;
	}
	memcpy(s, r->ns, rounds * sizeof(*s));
	qsort(s, rounds, sizeof(*s), cmp_dbl);
	r->min = s[0];
	r->max = s[rounds - 1];
	i = rounds / 2;
	r->med = rounds % 2 ? s[i] : (s[i - 1] + s[i]) / 2;
	free(s);
}

/* ---- nop: io_uring alone ---- */

/*
 * The same ring setup as the engine's, and the same submit-then-wait-for-
 * one pattern, so the only difference left to the hook modes is bsteer.
 */
static int nop_ring_init(struct io_uring *ring)
{
	struct io_uring_params p = {};
	int err;

	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		  IORING_SETUP_CQSIZE;
	p.cq_entries = RING_CQ;
	err = io_uring_queue_init_params(RING_ENTRIES, ring, &p);
	if (err)
		fprintf(stderr, "hookbench: cannot create an io_uring with SINGLE_ISSUER|DEFER_TASKRUN: %s\n",
			strerror(-err));
	return err;
}

static int nop_run(struct io_uring *ring, __u64 n)
{
	struct io_uring_cqe *cqes[BATCH];
	__u64 done = 0;
	__u32 i, k, got;
	int ret;

	while (done < n) {
		k = n - done < BATCH ? n - done : BATCH;
		for (i = 0; i < k; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

			if (!sqe) {
				fprintf(stderr, "hookbench: nop: submission queue full\n");
				return -EBUSY;
			}
			io_uring_prep_nop(sqe);
			io_uring_sqe_set_data64(sqe, done + i);
		}
		got = 0;
		while (got < k) {
			ret = io_uring_submit_and_wait(ring, 1);
			if (ret < 0 && ret != -EINTR && ret != -EAGAIN &&
			    ret != -EBUSY && ret != -ETIME) {
				fprintf(stderr, "hookbench: nop: io_uring_enter failed: %s\n",
					strerror(-ret));
				return ret;
			}
			if (stop)
				return -EINTR;
			do {
				i = io_uring_peek_batch_cqe(ring, cqes, BATCH);
				io_uring_cq_advance(ring, i);
				got += i;
			} while (i);
		}
		done += k;
	}
	return 0;
}

/* ---- the bsteer modes ---- */

static void on_complete(void *arg, __u32 req, int err)
{
	struct bench *b = arg;

	(void)req;
	b->completed++;
	/* passthrough has nothing to do for type NONE: that is the answer. */
	if (err != -EOPNOTSUPP)
		b->unexpected++;
}

static void bench_close(struct bench *b)
{
	if (b->engine_ok)
		bsteer_engine_free(b->e);
	b->engine_ok = false;
	bsteer_instance_close(b->in);
	b->in = NULL;
}

static int bench_open(struct bench *b, bool hook)
{
	struct bsteer_instance_opts o = {
		.name = b->name,
		.kind = "bench",
		.policy = "passthrough",
		.nslots = NSLOTS,
		.slot_size = SLOT_SIZE,
		.nrings = 1,
		.nreqs = NREQS,
		.ntargets = 1,
		.no_complete_hook = !hook,
	};
	static const struct bsteer_owner_ops cb = { .complete = on_complete };
	int err;

	snprintf(b->name, sizeof(b->name), "hookbench-%d-%s", (int)getpid(),
		 hook ? "hook" : "fb");
	b->in = bsteer_instance_open(&o, &err);
	if (!b->in) {
		fprintf(stderr, "hookbench: cannot open instance %s: %s\n",
			b->name, bsteer_errbuf());
		return err;
	}
	b->e = bsteer_engine_new(b->in, 0, NULL, &err);
	if (err) {
		fprintf(stderr, "hookbench: cannot start the engine: %s\n",
			bsteer_errbuf());
		goto fail;
	}
	b->engine_ok = true;
	b->owner = bsteer_engine_owner(b->e, &cb, b);
	err = bsteer_engine_files(b->e, &b->null_fd, 1, NULL, 0);
	if (err) {
		fprintf(stderr, "hookbench: %s\n", bsteer_errbuf());
		goto fail;
	}
	return 0;
fail:
	bench_close(b);
	return err;
}

/* Start @n requests, @batch at a time, and run each batch until idle. */
static int bench_run(struct bench *b, __u64 n, __u32 batch)
{
	struct bsteer_engine *e = b->e;
	__u64 started = 0;
	__u32 i, k, r;
	int err;

	while (started < n) {
		k = n - started < batch ? n - started : batch;
		for (i = 0; i < k; i++) {
			err = bsteer_req_alloc(e, b->owner, BSTEER_REQ_NONE, 0, 0, &r);
			if (err) {
				/*
				 * The engine is idle between batches, so every
				 * record should be back: this is a leak.
				 */
				fprintf(stderr, "hookbench: cannot start a request: %s (%u of %u request records free while idle)\n",
					strerror(-err), bsteer_reqs_free(e),
					bsteer_engine_reqs(e));
				return err;
			}
			err = bsteer_frontend_op(e, r, BSTEER_OP_NOP, 0,
						 BSTEER_NO_SLOT, 0, 0);
			if (err) {
				fprintf(stderr, "hookbench: cannot submit a nop: %s\n",
					strerror(-err));
				return err;
			}
		}
		started += k;
		while (bsteer_engine_busy(e)) {
			err = bsteer_engine_run(e, 1);
			if (err && err != -EINTR) {
				fprintf(stderr, "hookbench: engine failed: %s\n",
					strerror(-err));
				return err;
			}
			if (stop)
				return -EINTR;
		}
	}
	return 0;
}

static __u64 stat_get(struct bench *b, enum bsteer_stat s)
{
	return __atomic_load_n(&b->in->stats[s], __ATOMIC_RELAXED);
}

/* A few untimed requests first, so JIT code and map pages are warm. */
static __u64 warmup_count(__u64 n)
{
	return n < MAX_WARMUP ? n : MAX_WARMUP;
}

/* Time one mode on the open instance and add its counters to @res. */
static int measure(struct bench *b, struct result *res, __u32 round)
{
	__u64 h0, f0, r0, a0, t0, t1;
	int err;

	err = bench_run(b, warmup_count(res->reqs), res->batch);
	if (err)
		return err;
	b->completed = b->unexpected = 0;
	h0 = stat_get(b, BSTEER_ST_DEC_HOOK);
	f0 = stat_get(b, BSTEER_ST_DEC_FALLBACK);
	r0 = stat_get(b, BSTEER_ST_FALLBACK_RUNS);
	a0 = stat_get(b, BSTEER_ST_DEC_REJECTED) +
	     stat_get(b, BSTEER_ST_DEC_STALE) +
	     stat_get(b, BSTEER_ST_DEC_MISSING);

	t0 = now_ns();
	err = bench_run(b, res->reqs, res->batch);
	t1 = now_ns();
	if (err)
		return err;

	res->ns[round] = (double)(t1 - t0) / res->reqs;
	res->dec_hook += stat_get(b, BSTEER_ST_DEC_HOOK) - h0;
	res->dec_fb += stat_get(b, BSTEER_ST_DEC_FALLBACK) - f0;
	res->fb_runs += stat_get(b, BSTEER_ST_FALLBACK_RUNS) - r0;
	res->anomalies += stat_get(b, BSTEER_ST_DEC_REJECTED) +
			  stat_get(b, BSTEER_ST_DEC_STALE) +
			  stat_get(b, BSTEER_ST_DEC_MISSING) - a0;
	res->completed += b->completed;
	res->unexpected += b->unexpected;
	return 0;
}

static int measure_nop(struct io_uring *ring, struct result *res, __u32 round)
{
	__u64 t0, t1;
	int err;

	err = nop_run(ring, warmup_count(res->reqs));
	if (err)
		return err;
	t0 = now_ns();
	err = nop_run(ring, res->reqs);
	t1 = now_ns();
	if (err)
		return err;
	res->ns[round] = (double)(t1 - t0) / res->reqs;
	return 0;
}

static int one_round(struct bench *b, struct io_uring *ring,
		     struct result *res, __u32 round)
{
	int err;

	/* Nothing of ours is attached now: a true io_uring baseline. */
	err = measure_nop(ring, &res[M_NOP], round);
	if (err)
		return err;

	err = bench_open(b, true);
	if (err)
		return err;
	/* The baseline ring is not the instance's: its hooks only filter. */
	err = measure_nop(ring, &res[M_FOREIGN], round);
	if (!err)
		err = measure(b, &res[M_HOOK], round);
	bench_close(b);
	if (err)
		return err;

	/*
	 * A separate instance without the completion hook, rather than a
	 * detach on the first one: the library has no detach, and a second
	 * instance keeps the first one's hook off this ring entirely.
	 */
	err = bench_open(b, false);
	if (err)
		return err;
	err = measure(b, &res[M_FB64], round);
	if (!err)
		err = measure(b, &res[M_FB1], round);
	bench_close(b);
	return err;
}

/* Did the intended path make every decision? Warns and returns false if not. */
static bool verify(struct result *res, enum mode m, __u32 rounds)
{
	struct result *r = &res[m];
	__u64 want = r->reqs * rounds;
	__u64 got = m == M_HOOK ? r->dec_hook : r->dec_fb;
	__u64 other = m == M_HOOK ? r->dec_fb : r->dec_hook;
	bool ok = true;

	if (got != want || other) {
		fprintf(stderr, "hookbench: warning: %s: %llu of %llu decisions made by the %s, %llu by the %s\n",
			mode_names[m], (unsigned long long)got,
			(unsigned long long)want,
			m == M_HOOK ? "completion hook" : "fallback",
			(unsigned long long)other,
			m == M_HOOK ? "fallback" : "completion hook");
		ok = false;
	}
	if (r->completed != want || r->unexpected) {
		fprintf(stderr, "hookbench: warning: %s: %llu of %llu requests completed, %llu with a result other than -EOPNOTSUPP\n",
			mode_names[m], (unsigned long long)r->completed,
			(unsigned long long)want,
			(unsigned long long)r->unexpected);
		ok = false;
	}
	if (r->anomalies) {
		fprintf(stderr, "hookbench: warning: %s: %llu decisions rejected, stale or missing\n",
			mode_names[m], (unsigned long long)r->anomalies);
		ok = false;
	}
	return ok;
}

/* Other instances' hooks run on every io_uring completion, ours included. */
static int other_instances(void)
{
	DIR *d = opendir(BSTEER_PIN_ROOT);
	struct dirent *de;
	int n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static double delta(const struct result *res, enum mode m)
{
	return res[m].med - res[M_NOP].med;
}

static void print_table(const struct result *res, __u32 rounds)
{
	int m;

	printf("%-11s %10s %5s %19s %8s %8s %16s\n", "MODE", "REQS/ROUND",
	       "BATCH", "NS/DECISION(median)", "MIN(ns)", "MAX(ns)",
	       "DELTA_VS_NOP(ns)");
	for (m = 0; m < M__MAX; m++) {
		const struct result *r = &res[m];
		char d[32];

		if (m == M_NOP)
			snprintf(d, sizeof(d), "-");
		else
			snprintf(d, sizeof(d), "%+.1f", delta(res, m));
		printf("%-11s %10llu %5u %19.1f %8.1f %8.1f %16s\n",
		       mode_names[m], (unsigned long long)r->reqs, r->batch,
		       r->med, r->min, r->max, d);
	}
	printf("\n%-11s %14s %18s %13s %15s %8s %s\n", "MODE",
	       "HOOK_DECISIONS", "FALLBACK_DECISIONS", "FALLBACK_RUNS",
	       "DECISIONS/RUN", "EXPECTED", "CHECK");
	for (m = M_HOOK; m < M__MAX; m++) {
		const struct result *r = &res[m];
		char per[32];

		if (r->fb_runs)
			snprintf(per, sizeof(per), "%.1f",
				 (double)r->dec_fb / r->fb_runs);
		else
			snprintf(per, sizeof(per), "-");
		printf("%-11s %14llu %18llu %13llu %15s %8llu %s\n",
		       mode_names[m], (unsigned long long)r->dec_hook,
		       (unsigned long long)r->dec_fb,
		       (unsigned long long)r->fb_runs, per,
		       (unsigned long long)(r->reqs * rounds),
		       r->ok ? "ok" : "MISMATCH");
	}
}

static void print_json(const struct result *res, __u32 rounds, int cpu,
		       const char *kernel, int others, bool ok)
{
	struct bsteer_json j;
	__u32 i;
	int m;

	json_begin(&j, stdout);
	json_str(&j, "benchmark", "hookbench");
	json_str(&j, "policy", "passthrough");
	json_str(&j, "kernel", kernel);
	json_u64(&j, "rounds", rounds);
	json_i64(&j, "cpu", cpu);
	json_u64(&j, "other_instances", others);
	json_bool(&j, "verified", ok);
	json_arr(&j, "modes");
	for (m = 0; m < M__MAX; m++) {
		const struct result *r = &res[m];

		json_obj(&j, NULL);
		json_str(&j, "mode", mode_names[m]);
		json_u64(&j, "requests_per_round", r->reqs);
		json_u64(&j, "batch", r->batch);
		json_dbl(&j, "ns_per_decision_median", r->med);
		json_dbl(&j, "ns_per_decision_min", r->min);
		json_dbl(&j, "ns_per_decision_max", r->max);
		json_dbl(&j, "delta_vs_nop_ns", m == M_NOP ? 0 : delta(res, m));
		json_arr(&j, "rounds_ns");
		for (i = 0; i < rounds; i++)
			json_dbl(&j, NULL, r->ns[i]);
		json_end_arr(&j);
		if (m >= M_HOOK) {
			json_u64(&j, "decisions_hook", r->dec_hook);
			json_u64(&j, "decisions_fallback", r->dec_fb);
			json_u64(&j, "fallback_runs", r->fb_runs);
			json_u64(&j, "decisions_expected", r->reqs * rounds);
			json_u64(&j, "requests_completed", r->completed);
			json_bool(&j, "verified", r->ok);
		}
		json_end_obj(&j);
	}
	json_end_arr(&j);
	json_finish(&j);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "iters", required_argument, NULL, 'n' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "cpu", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct result res[M__MAX] = {};
	struct bench b = { .null_fd = -1 };
	struct io_uring ring;
	struct utsname uts;
	bool json = false, ring_ok = false, ok = true;
	__u64 iters = DEF_ITERS, rounds = 3, v;
	int opt, cpu = -1, others, m, rc = 1;
	__u32 i;

	opterr = 0;	/* our own message, in our own words */
	while ((opt = getopt_long(argc, argv, "n:r:c:jh", opts, NULL)) != -1) {
		switch (opt) {
		case 'n':
			if (parse_u64(optarg, 1, MAX_ITERS, &iters)) {
				fprintf(stderr, "hookbench: bad --iters '%s': want 1..%llu\n",
					optarg, MAX_ITERS);
				return 1;
			}
			break;
		case 'r':
			if (parse_u64(optarg, 1, MAX_ROUNDS, &rounds)) {
				fprintf(stderr, "hookbench: bad --rounds '%s': want 1..%d\n",
					optarg, MAX_ROUNDS);
				return 1;
			}
			break;
		case 'c':
			if (parse_u64(optarg, 0, CPU_SETSIZE - 1, &v)) {
				fprintf(stderr, "hookbench: bad --cpu '%s'\n", optarg);
				return 1;
			}
			cpu = v;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fprintf(stderr, "hookbench: bad option '%s'; run 'hookbench --help' for usage\n",
				argv[optind - 1]);
			return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hookbench: unexpected argument '%s'\n",
			argv[optind]);
		return 1;
	}
	if (geteuid()) {
		fprintf(stderr, "hookbench: must run as root (loads BPF programs)\n");
		return 1;
	}
	if (cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set)) {
			fprintf(stderr, "hookbench: cannot pin to cpu %d: %s\n",
				cpu, strerror(errno));
			return 1;
		}
	}

	for (m = 0; m < M__MAX; m++) {
		res[m].reqs = iters;
		res[m].batch = BATCH;
		res[m].ns = calloc(rounds, sizeof(*res[m].ns));
		if (!res[m].ns) {
			fprintf(stderr, "hookbench: out of memory\n");
			goto out;
		}
	}
	/* One PROG_RUN per request is slow; keep that mode's wall time sane. */
	res[M_FB1].reqs = iters / 10 ? iters / 10 : 1;
	res[M_FB1].batch = 1;

	b.null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (b.null_fd < 0) {
		fprintf(stderr, "hookbench: cannot open /dev/null: %s\n",
			strerror(errno));
		goto out;
	}
	if (bsteer_ensure_bpffs()) {
		fprintf(stderr, "hookbench: %s\n", bsteer_errbuf());
		goto out;
	}
	others = other_instances();
	if (others)
		fprintf(stderr, "hookbench: note: %d other bsteer instance(s) loaded under %s; their hooks run on every io_uring completion and inflate every mode\n",
			others, BSTEER_PIN_ROOT);
	/* Created before any instance exists, so no create hook claims it. */
	if (nop_ring_init(&ring))
		goto out;
	ring_ok = true;
	install_signals();

	for (i = 0; i < rounds; i++) {
		if (one_round(&b, &ring, res, i)) {
			if (stop)
				fprintf(stderr, "hookbench: interrupted\n");
			goto out;
		}
	}

	for (m = 0; m < M__MAX; m++)
		summarize(&res[m], rounds);
	res[M_NOP].ok = true;
	for (m = M_HOOK; m < M__MAX; m++) {
		res[m].ok = verify(res, m, rounds);
		ok = ok && res[m].ok;
	}
	if (uname(&uts))
		snprintf(uts.release, sizeof(uts.release), "unknown");
	if (json) {
		print_json(res, rounds, cpu, uts.release, others, ok);
	} else {
		char where[32];

		if (cpu >= 0)
			snprintf(where, sizeof(where), "pinned to cpu %d", cpu);
		else
			snprintf(where, sizeof(where), "unpinned");
		printf("hookbench: passthrough policy, one NOP per request, %llu round(s), kernel %s, %s\n\n",
		       (unsigned long long)rounds, uts.release, where);
		print_table(res, rounds);
	}
	rc = 0;
out:
	/* Pins go with the instance: nothing is left under bsteer/. */
	bench_close(&b);
	if (ring_ok)
		io_uring_queue_exit(&ring);
	if (b.null_fd >= 0)
		close(b.null_fd);
	for (m = 0; m < M__MAX; m++)
		free(res[m].ns);
	return rc;
}
