// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The FUSE-over-io_uring layouts in user/compat.h (Debian's linux/fuse.h
 * predates them) against the running kernel's BTF: every struct's size and
 * every member's offset. A kernel that changed one, or a typo here, fails.
 */
#include <bpf/btf.h>
#include "compat.h"
#include "test.h"

struct member {
	const char *name;
	size_t off;
};

/* Struct @name in @btf: its size, and the members' offsets. */
static void check(const struct btf *btf, const char *name, size_t size,
		  const struct member *m)
{
	const struct btf_type *t;
	const struct btf_member *bm;
	char what[128];
	int id, i, k;

	id = btf__find_by_name_kind(btf, name, BTF_KIND_STRUCT);
	snprintf(what, sizeof(what), "struct %s in the kernel's BTF", name);
	if (!ASSERT_TRUE(id > 0, what))
		return;
	t = btf__type_by_id(btf, id);
	snprintf(what, sizeof(what), "sizeof(struct %s)", name);
	ASSERT_EQ(t->size, size, what);
	for (k = 0; m[k].name; k++) {
		bm = btf_members(t);
		for (i = 0; i < btf_vlen(t); i++, bm++)
			if (!strcmp(btf__name_by_offset(btf, bm->name_off), m[k].name))
				break;
		snprintf(what, sizeof(what), "%s.%s", name, m[k].name);
		if (!ASSERT_TRUE(i < btf_vlen(t), what))
			continue;
		ASSERT_EQ(btf_member_bit_offset(t, i) / 8, m[k].off, what);
	}
}

#define M(s, f)	{ #f, offsetof(struct s, f) }

int main(void)
{
	static const struct member hdr[] = {
		M(fuse_uring_req_header, in_out), M(fuse_uring_req_header, op_in),
		M(fuse_uring_req_header, ring_ent_in_out), { NULL, 0 },
	};
	static const struct member ent[] = {
		M(fuse_uring_ent_in_out, flags), M(fuse_uring_ent_in_out, commit_id),
		M(fuse_uring_ent_in_out, payload_sz), M(fuse_uring_ent_in_out, padding),
		M(fuse_uring_ent_in_out, reserved), { NULL, 0 },
	};
	static const struct member cmd[] = {
		M(fuse_uring_cmd_req, flags), M(fuse_uring_cmd_req, commit_id),
		M(fuse_uring_cmd_req, qid), M(fuse_uring_cmd_req, padding), { NULL, 0 },
	};
	static const struct member in[] = {
		M(fuse_in_header, len), M(fuse_in_header, opcode), M(fuse_in_header, unique),
		M(fuse_in_header, nodeid), { NULL, 0 },
	};
	static const struct member init[] = {
		M(fuse_init_out, flags), M(fuse_init_out, max_write),
		M(fuse_init_out, max_pages), M(fuse_init_out, flags2), { NULL, 0 },
	};
	struct btf *btf = btf__load_vmlinux_btf();

	if (!btf)
		return test_skip("no kernel BTF");
	check(btf, "fuse_uring_req_header", sizeof(struct fuse_uring_req_header), hdr);
	check(btf, "fuse_uring_ent_in_out", sizeof(struct fuse_uring_ent_in_out), ent);
	check(btf, "fuse_uring_cmd_req", sizeof(struct fuse_uring_cmd_req), cmd);
	check(btf, "fuse_in_header", sizeof(struct fuse_in_header), in);
	check(btf, "fuse_init_out", sizeof(struct fuse_init_out), init);
	btf__free(btf);
	return test_failures ? TEST_FAIL : TEST_PASS;
}
