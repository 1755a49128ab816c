// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The spliced-read contract (BSTEER_OPF_REPLY, bsteer_engine_splice). A
 * reply's read over 64 KiB goes into the slot's pipe, and the slot's
 * memory keeps what it held: passthrough's read must leave the bytes in
 * the pipe, not in the slot. So a policy that writes from such a slot
 * would write stale memory (an earlier lease's data): bad_reply does, and
 * the executor must refuse it, fail the request and leave the target
 * alone. The slot's next lease must find its pipe empty.
 */
#include <fcntl.h>
#include "engine_util.h"

#define SLOT	(256 * 1024)
#define LEN	(128 * 1024)

static unsigned char data[LEN], got[LEN], after[LEN];

static void run(const char *policy, bool hostile)
{
	struct bsteer_instance_opts o = {
		.kind = "test", .nslots = 2, .slot_size = SLOT, .nrings = 1,
		.nreqs = 8, .ntargets = 1,
	};
	struct kept k = {};
	struct bsteer_owner_ops cb = { .complete = keep_cb, .pipes = true };
	void *cb_arg = &k;
	struct bsteer_instance *in = NULL;
	struct bsteer_engine *e = NULL;
	char path[] = "/tmp/bsteer-splice.XXXXXX";
	int tfd, pfd;
	bool engine = false;
	__u32 r, slot, slot2, len = 0;

	fprintf(stderr, "-- %s\n", policy);
	/* The file (ext4 under /tmp): the data, then a range nothing may write. */
	tfd = mkstemp(path);
	if (!ASSERT_TRUE(tfd >= 0, "target file"))
		return;
	unlink(path);
	memset(after, 0xab, LEN);
	if (!ASSERT_EQ(pwrite(tfd, data, LEN, 0), LEN, "data written") ||
	    !ASSERT_EQ(pwrite(tfd, after, LEN, LEN), LEN, "guard written"))
		goto out;

	if (test_engine_open(&o, policy, policy, &in, &e, &cb, cb_arg))
		goto out;
	engine = true;
	memset(in->pool, 0x5a, (size_t)2 * (SLOT + BSTEER_SLOT_HEADROOM));
	if (!ASSERT_EQ(bsteer_engine_splice(e), 0, "pipes for the slots") ||
	    !ASSERT_EQ(bsteer_engine_files(e, &tfd, 1, NULL, 0), 0, "files"))
		goto out;

	test_read_request(e, LEN, &r, &slot);
	if (!ASSERT_EQ(k.n, 1, "request finished"))
		goto out;
	ASSERT_EQ(in->stats[BSTEER_ST_SPLICED_READS], 1, "the read was spliced");
	ASSERT_TRUE(bsteer_slot_data(in, slot)[0] == 0x5a &&
		    !memcmp(bsteer_slot_data(in, slot), bsteer_slot_data(in, slot) + 1,
			    LEN - 1), "the slot's memory was not written");
	pfd = bsteer_slot_pipe(e, slot, &len);
	if (hostile) {
		ASSERT_EQ(k.err, -EIO, "the request failed");
		ASSERT_GE(in->stats[BSTEER_ST_DEC_REJECTED], 1, "the write was refused");
		ASSERT_EQ(pread(tfd, got, LEN, LEN), LEN, "guard read");
		ASSERT_EQ(memcmp(got, after, LEN), 0, "the target was not written");
	} else {
		ASSERT_EQ(k.err, 0, "the read succeeded");
		ASSERT_EQ(in->stats[BSTEER_ST_DEC_REJECTED], 0, "nothing refused");
		if (ASSERT_TRUE(pfd >= 0, "the data is in the slot's pipe") &&
		    ASSERT_EQ(len, LEN, "all of it")) {
			ASSERT_EQ(read(pfd, got, LEN), LEN, "pipe read");
			ASSERT_EQ(memcmp(got, data, LEN), 0, "the file's bytes");
			bsteer_slot_pipe_sent(e, slot, LEN);
		}
	}
	bsteer_req_put(e, r);

	/* The next lease of the same slot (LIFO) starts with an empty pipe. */
	ASSERT_EQ(bsteer_req_alloc(e, test_owner, BSTEER_REQ_READ, 0, LEN, &r), 0, "alloc again");
	ASSERT_EQ(bsteer_slot_lease(e, r, &slot2), 0, "lease again");
	ASSERT_EQ(slot2, slot, "the same slot");
	ASSERT_EQ(bsteer_slot_pipe(e, slot2, &len), -1, "its pipe is empty");
	bsteer_req_abandon(e, r);
	ASSERT_EQ(bsteer_slots_leaked(e), 0, "no slot leaked");
out:
	if (engine)
		bsteer_engine_free(e);
	bsteer_instance_close(in);
	close(tfd);
}

int main(void)
{
	__u32 i;

	if (!bpf_usable())
		return test_skip("needs root and kernel BTF");
	for (i = 0; i < LEN; i++)
		data[i] = (unsigned char)(i * 13 + i / 509);
	run("passthrough", false);
	run("bad_reply", true);
	return test_failures ? TEST_FAIL : TEST_PASS;
}
