/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Kernel interfaces newer than Debian 12's headers, all in one place:
 * io_uring past liburing 2.3 (include/uapi/linux/io_uring.h), and FUSE
 * over io_uring, which Debian's linux/fuse.h (protocol 7.38) lacks
 * (include/uapi/linux/fuse.h, 7.42+). selftests/test_fuse_abi checks the
 * FUSE layouts against the running kernel's BTF.
 */
#ifndef BSTEER_COMPAT_H
#define BSTEER_COMPAT_H

#include <liburing.h>

#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER	(1U << 12)	/* 6.0 */
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN	(1U << 13)	/* 6.1 */
#endif
#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY		(1U << 16)	/* 6.6 */
#endif

/* IORING_OP_NOP flags (6.10): post the result given in sqe->len. */
#ifndef IORING_NOP_INJECT_RESULT
#define IORING_NOP_INJECT_RESULT	(1U << 0)
#endif

static inline void bsteer_prep_nop_result(struct io_uring_sqe *sqe, int res)
{
	io_uring_prep_nop(sqe);
	sqe->rw_flags = IORING_NOP_INJECT_RESULT;	/* sqe->nop_flags */
	sqe->len = (__u32)res;
}

/* SEND_ZC (6.2): ask whether the kernel had to copy after all. */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE	(1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED	(1U << 31)
#endif

/* ---- FUSE over io_uring (protocol 7.42, Linux 6.14) ---- */
#include <stddef.h>
#include <linux/fuse.h>

#ifndef FUSE_OVER_IO_URING
#define FUSE_OVER_IO_URING		(1ULL << 41)	/* INIT flags2 bit 9 */
#endif
#define BSTEER_FUSE_MINOR		45	/* what 6.18 speaks */
#ifndef FUSE_STATX
#define FUSE_STATX			52
#endif

#define FUSE_URING_IN_OUT_HEADER_SZ	128
#define FUSE_URING_OP_IN_OUT_SZ		128

/* The ring entry's own words, after the two header areas. */
struct fuse_uring_ent_in_out {
	uint64_t flags;
	uint64_t commit_id;	/* the kernel's: what COMMIT_AND_FETCH names */
	uint32_t payload_sz;	/* in: bytes of payload; out: the reply's */
	uint32_t padding;
	uint64_t reserved;
};

/* iov[0] of a REGISTER: in_out holds fuse_in_header, then fuse_out_header. */
struct fuse_uring_req_header {
	char in_out[FUSE_URING_IN_OUT_HEADER_SZ];
	char op_in[FUSE_URING_OP_IN_OUT_SZ];	/* the first argument */
	struct fuse_uring_ent_in_out ring_ent_in_out;
};

enum fuse_uring_cmd {
	FUSE_IO_URING_CMD_INVALID = 0,
	FUSE_IO_URING_CMD_REGISTER = 1,
	FUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2,
};

/* The uring_cmd's argument, in the SQE's command area (sqe->cmd). */
struct fuse_uring_cmd_req {
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;		/* the queue: a possible CPU */
	uint8_t padding[6];
};

_Static_assert(sizeof(struct fuse_uring_req_header) == 288, "fuse_uring_req_header");
_Static_assert(sizeof(struct fuse_uring_cmd_req) == 24, "fuse_uring_cmd_req");
_Static_assert(offsetof(struct io_uring_sqe, cmd) == 48, "the SQE's command area");

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC			0xcafe4a11
#endif

#endif /* BSTEER_COMPAT_H */
