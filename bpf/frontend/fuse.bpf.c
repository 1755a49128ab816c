// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The FUSE request parser: a FUSE ring entry's header (struct
 * fuse_uring_req_header, in map memory: the in-header, the first
 * argument, the entry's own words) into a generic block request, at the
 * completion of the uring_cmd that delivered it. READ and WRITE become
 * block reads and writes (a WRITE's data is in the entry's payload, a
 * slot, already), FSYNC and FLUSH a flush of every leg, FALLOCATE a
 * discard (punch) or a zeroing; the rest (LOOKUP, GETATTR, ...) is left
 * to the frontend in userspace (type NONE).
 */
#include "frontend.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE	0x01
#define FALLOC_FL_PUNCH_HOLE	0x02
#define FALLOC_FL_ZERO_RANGE	0x10
#endif
#define PUNCH		(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)
#define ZERO		(FALLOC_FL_KEEP_SIZE | FALLOC_FL_ZERO_RANGE)
#ifndef EPROTO
#define EPROTO		71
#endif

_Static_assert(sizeof(struct fuse_uring_req_header) <= BSTEER_HDR_SIZE,
	       "a ring entry's header fits a header entry");

/* A ranged request: offset, length, and neither zero nor wrapping. */
static __always_inline void ranged(struct bsteer_blkreq *out, __u64 off,
				   __u32 len, __u8 type)
{
	out->type = type;
	out->offset = off;
	out->len = len;
	if (!len || off + len < off)
		out->error = -EINVAL;
}

static __always_inline void fuse_parse(const __u8 *b, __s32 res,
				       struct bsteer_blkreq *out)
{
	const struct fuse_uring_req_header *h = (const void *)b;
	const struct fuse_in_header *in = (const void *)h->in_out;
	const struct fuse_read_in *rd = (const void *)h->op_in;
	const struct fuse_write_in *wr = (const void *)h->op_in;
	const struct fuse_fallocate_in *fa = (const void *)h->op_in;

	if (res < 0) {		/* the entry itself failed (unmounted, aborted) */
		out->fatal = 1;
		out->error = res;
		return;
	}
	out->cookie = in->unique;
	out->cmd = in->opcode;
	switch (in->opcode) {
	case FUSE_READ:
		ranged(out, rd->offset, rd->size, BSTEER_REQ_READ);
		break;
	case FUSE_WRITE:
		ranged(out, wr->offset, wr->size, BSTEER_REQ_WRITE);
		out->payload = 1;
		/* The data the kernel put in the payload is the whole write. */
		if (h->ring_ent_in_out.payload_sz != wr->size)
			out->error = -EPROTO;
		break;
	case FUSE_FSYNC:
	case FUSE_FLUSH:
		out->type = BSTEER_REQ_FLUSH;
		break;
	case FUSE_FALLOCATE:
		out->flags = fa->mode;
		if (fa->mode == PUNCH)
			ranged(out, fa->offset, fa->length, BSTEER_REQ_TRIM);
		else if (fa->mode == ZERO)
			ranged(out, fa->offset, fa->length, BSTEER_REQ_WRITE_ZEROES);
		else if (fa->mode & ~FALLOC_FL_KEEP_SIZE)
			out->error = -EOPNOTSUPP;
		/* A preallocation (KEEP_SIZE alone, or 0) is the frontend's. */
		break;
	default:
		break;	/* the frontend answers it in userspace */
	}
}

BSTEER_PARSER(fuse)
