// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The NBD header parser (bpf/frontend/nbd.bpf.c), run through its SEC("syscall")
 * twin with BPF_PROG_RUN on headers written into map memory: every field
 * of a valid request, and each way a header can be wrong.
 */
#include <endian.h>
#include "engine_util.h"

struct hdr_case {
	const char *name;
	__u32 magic;
	__u16 flags, cmd;
	__u64 off;
	__u32 len;
	__s32 res;		/* what the receive returned */
	/* expected */
	__s32 error;
	__u8 type, payload, fatal;
};

static const struct hdr_case cases[] = {
	{ "read", 0x25609513, 0, 0, 1 << 20, 4096, 28, 0, BSTEER_REQ_READ, 0, 0 },
	{ "write fua", 0x25609513, 1, 1, 8192, 512, 28, 0, BSTEER_REQ_WRITE, 1, 0 },
	{ "flush", 0x25609513, 0, 3, 0, 0, 28, 0, BSTEER_REQ_FLUSH, 0, 0 },
	{ "trim", 0x25609513, 0, 4, 4096, 4096, 28, 0, BSTEER_REQ_TRIM, 0, 0 },
	{ "zero no-hole", 0x25609513, 2, 6, 0, 65536, 28, 0, BSTEER_REQ_WRITE_ZEROES, 0, 0 },
	{ "disc", 0x25609513, 0, 2, 0, 0, 28, 0, BSTEER_REQ_NONE, 0, 0 },
	{ "bad magic", 0x12345678, 0, 0, 0, 512, 28, -71, BSTEER_REQ_NONE, 0, 1 },
	{ "short header", 0x25609513, 0, 0, 0, 512, 20, -71, BSTEER_REQ_NONE, 0, 1 },
	{ "receive error", 0x25609513, 0, 0, 0, 512, -104, -104, BSTEER_REQ_NONE, 0, 1 },
	{ "unknown command", 0x25609513, 0, 99, 0, 512, 28, -22, BSTEER_REQ_NONE, 0, 0 },
	{ "unknown flag", 0x25609513, 0x100, 0, 0, 512, 28, -22, BSTEER_REQ_READ, 0, 0 },
	{ "zero length read", 0x25609513, 0, 0, 0, 0, 28, -22, BSTEER_REQ_READ, 0, 0 },
	{ "offset overflow write", 0x25609513, 0, 1, ~0ull - 100, 512, 28, -28, BSTEER_REQ_WRITE, 1, 0 },
	{ "offset overflow zero", 0x25609513, 0, 6, ~0ull - 100, 512, 28, -28, BSTEER_REQ_WRITE_ZEROES, 0, 0 },
	{ "offset overflow read", 0x25609513, 0, 0, ~0ull - 100, 512, 28, -22, BSTEER_REQ_READ, 0, 0 },
	/* Each flag on the commands it is documented for, then on one it is not. */
	{ "read df fua", 0x25609513, 5, 0, 0, 512, 28, 0, BSTEER_REQ_READ, 0, 0 },
	{ "zero fua no-hole fast", 0x25609513, 0x13, 6, 0, 512, 28, 0, BSTEER_REQ_WRITE_ZEROES, 0, 0 },
	{ "block status req-one", 0x25609513, 8, 7, 0, 512, 28, 0, BSTEER_REQ_NONE, 0, 0 },
	{ "cache fua", 0x25609513, 1, 5, 0, 512, 28, 0, BSTEER_REQ_NONE, 0, 0 },
	{ "flush fua", 0x25609513, 1, 3, 0, 0, 28, 0, BSTEER_REQ_FLUSH, 0, 0 },
	{ "trim fua", 0x25609513, 1, 4, 0, 512, 28, 0, BSTEER_REQ_TRIM, 0, 0 },
	{ "write req-one", 0x25609513, 8, 1, 0, 512, 28, -22, BSTEER_REQ_WRITE, 1, 0 },
	{ "write no-hole", 0x25609513, 2, 1, 0, 512, 28, -22, BSTEER_REQ_WRITE, 1, 0 },
	{ "write df", 0x25609513, 4, 1, 0, 512, 28, -22, BSTEER_REQ_WRITE, 1, 0 },
	{ "cache no-hole", 0x25609513, 2, 5, 0, 512, 28, -22, BSTEER_REQ_NONE, 0, 0 },
	{ "cache req-one", 0x25609513, 8, 5, 0, 512, 28, -22, BSTEER_REQ_NONE, 0, 0 },
	{ "read fast-zero", 0x25609513, 0x10, 0, 0, 512, 28, -22, BSTEER_REQ_READ, 0, 0 },
	{ "trim no-hole", 0x25609513, 2, 4, 0, 512, 28, -22, BSTEER_REQ_TRIM, 0, 0 },
	{ "block status df", 0x25609513, 4, 7, 0, 512, 28, -22, BSTEER_REQ_NONE, 0, 0 },
	{ "flag bit 5 on zero", 0x25609513, 0x20, 6, 0, 512, 28, -22, BSTEER_REQ_WRITE_ZEROES, 0, 0 },
	{ "bad flag before overflow", 0x25609513, 8, 1, ~0ull - 100, 512, 28, -22, BSTEER_REQ_WRITE, 1, 0 },
};

int main(void)
{
	struct bsteer_instance_opts o = {
		.kind = "test", .nslots = 2, .slot_size = 4096, .nrings = 1,
		.nreqs = 4, .ntargets = 0,
	};
	int nbd = bsteer_frontend_id(bsteer_frontend_find("nbd"));
	struct bsteer_instance *in;
	char name[64];
	size_t i;
	int err;

	if (!bpf_usable())
		return test_skip("needs root and kernel BTF");
	test_instance_name(name, sizeof(name), "parser");
	o.name = name;
	if (!ASSERT_TRUE(nbd >= 0, "the nbd frontend is registered"))
		return TEST_FAIL;
	o.frontends = 1u << nbd;
	in = bsteer_instance_open(&o, &err);
	if (!ASSERT_TRUE(in != NULL, "instance open")) {
		fprintf(stderr, "%s\n", bsteer_errbuf());
		return TEST_FAIL;
	}
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct hdr_case *t = &cases[i];
		__u32 conn = 7 + i, idx = bsteer_hdr_index(0, conn);
		unsigned char *h = in->fe_hdr + (size_t)idx * BSTEER_HDR_SIZE;
		const struct bsteer_blkreq *r = &in->fe_req[idx];
		__u64 ud = bsteer_parse_ud(nbd, 0, conn, i + 1);
		__u64 cookie = 0x1122334455667788ull + i, v64;
		__u32 v32;
		__u16 v16;

		fprintf(stderr, "-- %s\n", t->name);
		v32 = htobe32(t->magic);
		memcpy(h, &v32, 4);
		v16 = htobe16(t->flags);
		memcpy(h + 4, &v16, 2);
		v16 = htobe16(t->cmd);
		memcpy(h + 6, &v16, 2);
		memcpy(h + 8, &cookie, 8);
		v64 = htobe64(t->off);
		memcpy(h + 16, &v64, 8);
		v32 = htobe32(t->len);
		memcpy(h + 24, &v32, 4);
		if (!ASSERT_EQ(bsteer_parse_fallback(in, ud, t->res), 0, "prog run"))
			continue;
		ASSERT_EQ(r->stamp, ud, "stamped with the completion");
		ASSERT_EQ(r->error, t->error, "error");
		ASSERT_EQ(r->fatal, t->fatal, "fatal");
		if (t->fatal)
			continue;
		ASSERT_EQ(r->cmd, t->cmd, "command");
		ASSERT_EQ(r->flags, t->flags, "flags");
		ASSERT_EQ(r->type, t->type, "generic type");
		ASSERT_EQ(r->payload, t->payload, "payload");
		ASSERT_EQ(r->offset, t->off, "offset");
		ASSERT_EQ(r->len, t->len, "length");
		ASSERT_TRUE(r->cookie == cookie, "cookie kept as sent");
	}
	ASSERT_EQ(in->stats[BSTEER_ST_PARSED_FALLBACK],
		  sizeof(cases) / sizeof(cases[0]), "parses counted");
	bsteer_instance_close(in);
	return test_failures ? TEST_FAIL : TEST_PASS;
}
