// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A reply header written into a slot's headroom leaves with the slot's data
 * in one stream write (bsteer_frontend_send_prefixed), byte for byte, also
 * when the socket takes it in short pieces and the rest is resubmitted.
 * A prefix larger than the headroom, or one that with the data overruns
 * the slot, is refused.
 */
#include <fcntl.h>
#include <sys/socket.h>
#include "engine_util.h"

#define SLOT	(256 * 1024)
#define LEN	(128 * 1024)
#define HDR	16

int main(void)
{
	struct bsteer_instance_opts o = {
		.kind = "test", .nslots = 2,
		.slot_size = SLOT, .nrings = 1, .nreqs = 8, .ntargets = 1,
	};
	struct kept k = {};
	struct bsteer_owner_ops cb = { .complete = keep_cb };
	void *cb_arg = &k;
	struct bsteer_instance *in = NULL;
	struct bsteer_engine *e = NULL;
	static unsigned char data[LEN], got[HDR + LEN];
	unsigned char hdr[HDR];
	char path[] = "/tmp/bsteer-prefixed.XXXXXX";
	int sv[2] = { -1, -1 }, tfd = -1, rc = TEST_FAIL, small = 4096;
	size_t have = 0;
	bool engine = false;
	__u64 end;
	__u32 r, slot, i;

	if (!bpf_usable())
		return test_skip("needs root and kernel BTF");
	for (i = 0; i < LEN; i++)
		data[i] = (unsigned char)(i * 7 + i / 251);
	for (i = 0; i < HDR; i++)
		hdr[i] = 0xa0 + i;
	tfd = mkstemp(path);
	if (tfd < 0 || write(tfd, data, LEN) != LEN)
		goto out;
	unlink(path);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		goto out;
	/* A small send buffer: the write goes out in short pieces. */
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	fcntl(sv[1], F_SETFL, O_NONBLOCK);

	if (test_engine_open(&o, "prefixed", "passthrough", &in, &e, &cb, cb_arg))
		goto out;
	engine = true;
	if (!ASSERT_EQ(bsteer_engine_files(e, &tfd, 1, &sv[0], 1), 0, "files"))
		goto out;

	/* A READ of the target into a slot, decided by passthrough. */
	test_read_request(e, LEN, &r, &slot);
	if (!ASSERT_EQ(k.n, 1, "request finished") || !ASSERT_EQ(k.err, 0, "read ok"))
		goto out;
	ASSERT_EQ(memcmp(bsteer_slot_data(in, slot), data, LEN), 0, "slot holds the data");

	ASSERT_EQ(bsteer_frontend_send_prefixed(e, r, BSTEER_FRONTEND_FILE(0), slot,
						BSTEER_SLOT_HEADROOM + 1, 512),
		  -EINVAL, "prefix larger than the headroom refused");
	ASSERT_EQ(bsteer_frontend_send_prefixed(e, r, BSTEER_FRONTEND_FILE(0), slot,
						HDR, SLOT),
		  -EINVAL, "prefix and data larger than the slot refused");

	memcpy(bsteer_slot_data(in, slot) - HDR, hdr, HDR);
	ASSERT_EQ(bsteer_frontend_send_prefixed(e, r, BSTEER_FRONTEND_FILE(0), slot,
						HDR, LEN), 0, "prefixed send");
	end = bsteer_now_ns() + 5000000000ull;
	while (have < sizeof(got) && bsteer_now_ns() < end) {
		ssize_t n;

		bsteer_engine_run_timeout(e, 0, 0);
		n = read(sv[1], got + have, sizeof(got) - have);
		if (n > 0)
			have += n;
		else
			usleep(1000);
	}
	ASSERT_EQ(have, sizeof(got), "header and data all arrived");
	ASSERT_EQ(memcmp(got, hdr, HDR), 0, "the header first");
	ASSERT_EQ(memcmp(got + HDR, data, LEN), 0, "then the data, unchanged");
	ASSERT_EQ(run_idle(e, 5), 0, "send to idle");
	ASSERT_TRUE(in->stats[BSTEER_ST_OPS_SHORT] > 0, "the socket took it in pieces");
	ASSERT_EQ(in->stats[BSTEER_ST_DEC_REJECTED], 0, "every rest accepted");
	bsteer_req_put(e, r);
	ASSERT_EQ(in->meta[slot].state, BSTEER_SLOT_FREE, "slot free after the put");
	ASSERT_EQ(bsteer_slots_leaked(e), 0, "no slot leaked");
	rc = test_failures ? TEST_FAIL : TEST_PASS;
out:
	if (engine)
		bsteer_engine_free(e);
	bsteer_instance_close(in);
	if (tfd >= 0)
		close(tfd);
	if (sv[0] >= 0) {
		close(sv[0]);
		close(sv[1]);
	}
	return rc;
}
