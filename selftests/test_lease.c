// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Lease and release: a slot the owner released while an op still holds it
 * is not handed out again; it returns to the pool when the last op
 * completes. A pipe keeps the op in flight for as long as the test wants.
 */
#include <fcntl.h>
#include "engine_util.h"

static int returned_n;
static __u32 returned_slot;

static void on_return(void *arg, __u32 slot)
{
	(void)arg;
	returned_n++;
	returned_slot = slot;
}

int main(void)
{
	struct bsteer_instance_opts o = {
		.kind = "test", .policy = "passthrough", .nslots = 2,
		.slot_size = 4096, .nrings = 1, .nreqs = 8, .ntargets = 1,
	};
	struct done_log log = {};
	struct bsteer_owner_ops cb = { .complete = done_log_cb };
	void *cb_arg = &log;
	struct bsteer_instance *in = NULL;
	struct bsteer_engine *e = NULL;
	char name[64], buf[4096];
	__u32 r1, r2, r3, s1, s2, s3;
	int pfd[2] = { -1, -1 }, null_fd = -1, err, rc = TEST_FAIL;
	bool engine = false;

	if (!bpf_usable())
		return test_skip("needs root and kernel BTF");
	test_instance_name(name, sizeof(name), "lease");
	o.name = name;
	/* Slots are laid out as the kernel lays out array values: 8-aligned. */
	o.slot_size = 4100;
	ASSERT_TRUE(bsteer_instance_open(&o, &err) == NULL && err == -EINVAL,
		    "slot size not a multiple of 8 refused");
	o.slot_size = 4096;
	in = bsteer_instance_open(&o, &err);
	if (!ASSERT_TRUE(in != NULL, "instance open")) {
		fprintf(stderr, "%s\n", bsteer_errbuf());
		goto out;
	}
	e = test_engine_new(in, &cb, cb_arg);
	if (!ASSERT_TRUE(e != NULL, "engine init"))
		goto out;
	engine = true;
	if (pipe(pfd) || (null_fd = open("/dev/null", O_WRONLY)) < 0)
		goto out;
	if (!ASSERT_EQ(bsteer_engine_files(e, &null_fd, 1, &pfd[0], 1), 0, "files"))
		goto out;

	/* r1 reads from the empty pipe into s1: the op stays in flight. */
	ASSERT_EQ(bsteer_req_alloc(e, test_owner, BSTEER_REQ_WRITE, 0, 4096, &r1), 0, "alloc r1");
	ASSERT_EQ(bsteer_slot_lease(e, r1, &s1), 0, "lease s1");
	ASSERT_EQ(bsteer_frontend_op(e, r1, BSTEER_OP_READ, BSTEER_FRONTEND_FILE(0),
				     s1, 4096, BSTEER_OFF_STREAM), 0, "read op");
	ASSERT_EQ(bsteer_engine_run(e, 0), 0, "submit");
	ASSERT_EQ(in->meta[s1].inflight, 1, "s1 held by one op");
	ASSERT_EQ(in->meta[s1].kops, 1, "kernel saw one fixed-buffer op on s1");

	/* The owner lets go while the op holds the slot. */
	bsteer_slot_release(e, s1);
	ASSERT_EQ(in->meta[s1].state, BSTEER_SLOT_RELEASING, "s1 releasing");
	ASSERT_EQ(bsteer_req_alloc(e, test_owner, BSTEER_REQ_WRITE, 0, 4096, &r2), 0, "alloc r2");
	ASSERT_EQ(bsteer_slot_lease(e, r2, &s2), 0, "lease s2");
	ASSERT_NE(s2, s1, "held slot not handed out again");
	ASSERT_EQ(bsteer_req_alloc(e, test_owner, BSTEER_REQ_WRITE, 0, 4096, &r3), 0, "alloc r3");
	ASSERT_EQ(bsteer_slot_lease(e, r3, &s3), -ENOBUFS, "pool exhausted while s1 held");
	bsteer_slot_release(e, s2);
	ASSERT_EQ(in->meta[s2].state, BSTEER_SLOT_FREE, "idle slot returns at once");

	/*
	 * Feed the pipe: the read completes and frees s1. The lease is gone,
	 * so the policy's write from s1 is refused and r1 fails; nothing
	 * touches s1 after its owner let go.
	 */
	memset(buf, 0x42, sizeof(buf));
	ASSERT_EQ(write(pfd[1], buf, sizeof(buf)), (long)sizeof(buf), "pipe write");
	ASSERT_EQ(run_idle(e, 5), 0, "run to idle");
	ASSERT_EQ(log.n, 1, "one request completed");
	ASSERT_EQ(log.err[0], -EIO, "r1 fails: its slot was released");
	ASSERT_EQ(in->stats[BSTEER_ST_DEC_REJECTED], 1, "write from a released slot refused");
	ASSERT_EQ(in->meta[s1].state, BSTEER_SLOT_FREE, "s1 back after its last op");
	ASSERT_EQ(in->meta[s1].inflight, 0, "no op holds s1");
	ASSERT_EQ(in->meta[s1].kops, 1, "kernel saw only the read on s1");
	ASSERT_EQ(in->stats[BSTEER_ST_VIOLATIONS], 0, "no direction violations");
	ASSERT_EQ(in->stats[BSTEER_ST_DEC_HOOK], 1, "decision by the hook");

	/* The normal path: lease, fill, seal, write, release at the join. */
	ASSERT_EQ(bsteer_req_alloc(e, test_owner, BSTEER_REQ_WRITE, 0, 4096, &r2), 0, "alloc r2'");
	ASSERT_EQ(bsteer_slot_lease(e, r2, &s2), 0, "lease for r2'");
	ASSERT_EQ(bsteer_frontend_op(e, r2, BSTEER_OP_READ, BSTEER_FRONTEND_FILE(0),
				     s2, 4096, BSTEER_OFF_STREAM), 0, "read op r2'");
	ASSERT_EQ(write(pfd[1], buf, sizeof(buf)), (long)sizeof(buf), "pipe write 2");
	ASSERT_EQ(run_idle(e, 5), 0, "run to idle 2");
	ASSERT_EQ(log.n, 2, "second request completed");
	ASSERT_EQ(log.err[1], 0, "r2' ok");
	ASSERT_EQ(in->meta[s2].kops, 2 + (s2 == s1), "read and write seen on the slot");
	ASSERT_EQ(in->meta[s2].state, BSTEER_SLOT_FREE, "slot released at the join");
	ASSERT_EQ(in->targets[0].bytes, 4096, "target got the payload once");
	ASSERT_EQ(bsteer_slot_lease(e, r3, &s3), 0, "lease after return");
	bsteer_slot_release(e, s3);

	/*
	 * A lent (foreign) buffer: the owner's release does not return it
	 * while an op holds it; the callback runs once, after that op.
	 */
	ASSERT_EQ(bsteer_req_alloc(e, test_owner, BSTEER_REQ_WRITE, 0, 4096, &r3), 0, "alloc lend");
	ASSERT_EQ(bsteer_slot_lend(e, r3, on_return, NULL, &s3), 0, "lend");
	ASSERT_EQ(bsteer_frontend_op(e, r3, BSTEER_OP_READ, BSTEER_FRONTEND_FILE(0),
				     s3, 4096, BSTEER_OFF_STREAM), 0, "read into lent slot");
	ASSERT_EQ(bsteer_engine_run(e, 0), 0, "submit lend");
	bsteer_slot_release(e, s3);
	ASSERT_EQ(returned_n, 0, "not returned while the read holds it");
	ASSERT_EQ(write(pfd[1], buf, sizeof(buf)), (long)sizeof(buf), "pipe write 3");
	ASSERT_EQ(run_idle(e, 5), 0, "run to idle 3");
	ASSERT_EQ(returned_n, 1, "release callback ran once");
	ASSERT_EQ(returned_slot, s3, "for the lent slot");
	ASSERT_EQ(bsteer_slot_lease(e, r3, &s2), 0, "slot reusable after return");
	bsteer_slot_release(e, s2);
	ASSERT_EQ(returned_n, 1, "a plain lease has no callback");
	ASSERT_EQ(bsteer_slots_leaked(e), 0, "no slot leaked");
	rc = test_failures ? TEST_FAIL : TEST_PASS;
out:
	if (engine)
		bsteer_engine_free(e);
	bsteer_instance_close(in);
	if (pfd[0] >= 0) {
		close(pfd[0]);
		close(pfd[1]);
	}
	if (null_fd >= 0)
		close(null_fd);
	return rc;
}
