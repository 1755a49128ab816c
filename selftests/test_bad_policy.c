// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Hostile policies: each of selftests/progs/bad_*.bpf.o and stale*.bpf.o
 * makes one kind of bad decision, or forges shared state to dress one up. The executor must refuse it, fail only
 * that request, and change no byte outside the request's own slot: the
 * target keeps its contents and every other slot keeps its pattern.
 * passthrough runs the same scenario as the control, to show the checks
 * would notice a write.
 */
#include <fcntl.h>
#include "engine_util.h"

#define SLOT	16384
#define NSLOTS	4

struct scenario {
	const char *policy;
	enum bsteer_stat counter;	/* must grow */
	bool target_written;		/* the control writes the target */
	__u32 max_ops;			/* ops it may get submitted (0: 1) */
};

static const struct scenario scenarios[] = {
	{ "passthrough", BSTEER_ST_DEC_HOOK, true, 0 },
	{ "bad_slot", BSTEER_ST_DEC_REJECTED, false, 0 },
	{ "bad_owner", BSTEER_ST_DEC_REJECTED, false, 0 },
	{ "bad_dir", BSTEER_ST_DEC_REJECTED, false, 0 },
	{ "bad_target", BSTEER_ST_DEC_REJECTED, false, 0 },
	{ "bad_len", BSTEER_ST_DEC_REJECTED, false, 0 },
	{ "stale_slot", BSTEER_ST_DEC_REJECTED, false, 0 },
	{ "stale", BSTEER_ST_DEC_STALE, false, 0 },
	{ "bad_dup", BSTEER_ST_DEC_REJECTED, false, 0 },
	{ "bad_frontend", BSTEER_ST_DEC_REJECTED, false, 0 },
	{ "bad_forge", BSTEER_ST_DEC_REJECTED, false, 0 },
	/* Endless: stopped by the executor's op budget, its syncs run. */
	{ "bad_loop", BSTEER_ST_BUDGET, false, 1 + BSTEER_OP_BUDGET },
	{ "bad_idle", BSTEER_ST_DEC_REJECTED, false, 0 },
};

static bool all_bytes(const unsigned char *p, size_t n, unsigned char v)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

static int run_one(const struct scenario *sc, const char *dir)
{
	char spath[PATH_MAX], tpath[PATH_MAX];
	struct bsteer_instance_opts o = {
		.kind = "test", .nslots = NSLOTS, .slot_size = SLOT,
		.nrings = 1, .nreqs = 8, .ntargets = 1,
	};
	struct done_log log = {};
	struct bsteer_owner_ops cb = { .complete = done_log_cb };
	void *cb_arg = &log;
	struct bsteer_instance *in = NULL;
	struct bsteer_engine *e = NULL;
	static unsigned char buf[SLOT * 4];
	int sfd = -1, tfd = -1, failed_before = test_failures;
	bool engine = false;
	__u32 r, s, i;

	fprintf(stderr, "-- %s\n", sc->policy);
	snprintf(spath, sizeof(spath), "%s/src-%s", dir, sc->policy);
	snprintf(tpath, sizeof(tpath), "%s/tgt-%s", dir, sc->policy);
	sfd = open(spath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	tfd = open(tpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (sfd < 0 || tfd < 0)
		goto out;
	memset(buf, 0xcd, SLOT);
	memset(buf + SLOT, 0xab, sizeof(buf) - SLOT);
	if (write(sfd, buf, SLOT) != SLOT ||
	    pwrite(tfd, buf + SLOT, SLOT * 3, 0) != SLOT * 3)
		goto out;

	if (test_engine_open(&o, sc->policy, sc->policy, &in, &e, &cb, cb_arg))
		goto out;
	engine = true;
	memset(in->pool, 0x5a, (size_t)NSLOTS * (SLOT + BSTEER_SLOT_HEADROOM));
	if (!ASSERT_EQ(bsteer_engine_files(e, &tfd, 1, &sfd, 1), 0, "files"))
		goto out;

	ASSERT_EQ(bsteer_req_alloc(e, test_owner, BSTEER_REQ_WRITE, 0, SLOT, &r), 0, "alloc");
	ASSERT_EQ(bsteer_slot_lease(e, r, &s), 0, "lease");
	ASSERT_EQ(bsteer_frontend_op(e, r, BSTEER_OP_READ, BSTEER_FRONTEND_FILE(0),
				     s, SLOT, 0), 0, "payload read");
	if (!ASSERT_EQ(run_idle(e, 5), 0, "run to idle"))
		goto out;

	ASSERT_EQ(log.n, 1, "request completed");
	ASSERT_EQ(log.err[0], sc->target_written ? 0 : -EIO, "request result");
	ASSERT_GE(in->stats[sc->counter], 1, "counter for this misbehaviour");
	if (!sc->target_written && !sc->max_ops) {
		ASSERT_EQ(in->stats[BSTEER_ST_OPS_SUBMITTED], 1,
			  "nothing submitted beyond the payload read");
	} else if (sc->max_ops) {
		ASSERT_TRUE(in->stats[BSTEER_ST_OPS_SUBMITTED] <= sc->max_ops,
			    "no more ops than the budget");
	}
	/* Headroom and data of every other slot; the headroom of our own. */
	for (i = 0; i < NSLOTS; i++) {
		unsigned char *h = bsteer_slot_data(in, i) - BSTEER_SLOT_HEADROOM;

		ASSERT_TRUE(all_bytes(h, BSTEER_SLOT_HEADROOM, 0x5a),
			    "slot headroom untouched");
		if (i == s)
			continue;
		ASSERT_TRUE(all_bytes(bsteer_slot_data(in, i), SLOT, 0x5a),
			    "other slots untouched");
	}
	ASSERT_TRUE(all_bytes(bsteer_slot_data(in, s), SLOT, 0xcd),
		    "own slot holds the payload");
	if (pread(tfd, buf, SLOT * 3, 0) != SLOT * 3)
		goto out;
	ASSERT_TRUE(all_bytes(buf, SLOT, sc->target_written ? 0xcd : 0xab),
		    sc->target_written ? "control wrote the target" :
					 "target unchanged");
	ASSERT_TRUE(all_bytes(buf + SLOT, SLOT * 2, 0xab),
		    "target beyond the request unchanged");
	ASSERT_EQ(bsteer_slots_leaked(e), 0, "no slot leaked");
	ASSERT_EQ(bsteer_reqs_free(e), 8, "request record returned");
	ASSERT_EQ(in->stats[BSTEER_ST_VIOLATIONS], 0, "no violation reached the kernel");
out:
	if (engine)
		bsteer_engine_free(e);
	bsteer_instance_close(in);
	if (sfd >= 0)
		close(sfd);
	if (tfd >= 0)
		close(tfd);
	unlink(spath);
	unlink(tpath);
	return test_failures == failed_before ? 0 : -1;
}

int main(void)
{
	char dir[] = "/tmp/bsteer-badpol-XXXXXX";
	size_t i;

	if (!bpf_usable())
		return test_skip("needs root and kernel BTF");
	if (!mkdtemp(dir))
		return TEST_FAIL;
	for (i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		run_one(&scenarios[i], dir);
	rmdir(dir);
	return test_failures ? TEST_FAIL : TEST_PASS;
}
