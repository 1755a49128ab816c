// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The NBD request parser: 28 bytes of header, in map memory, into a generic
 * block request, at io_uring's completion hook. Protocol-level checks live
 * here (magic, command, flags per command, zero length, offset overflow);
 * checks that need the export (range, read-only, block size) are the
 * frontend's.
 */
#include "frontend.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#include "nbd_proto.h"

#ifndef EPROTO
#define EPROTO			71
#endif

static __always_inline void nbd_parse(const __u8 *b, __s32 res,
				      struct bsteer_blkreq *out)
{
	__u32 magic;
	bool ranged;

	if (res != NBD_REQUEST_LEN) {
		out->fatal = 1;
		out->error = res < 0 ? res : -EPROTO;
		return;
	}
	magic = bpf_ntohl(*(const __u32 *)b);
	if (magic != NBD_REQUEST_MAGIC) {
		out->fatal = 1;
		out->error = -EPROTO;
		return;
	}
	out->flags = bpf_ntohs(*(const __u16 *)(b + 4));
	out->cmd = bpf_ntohs(*(const __u16 *)(b + 6));
	out->cookie = *(const __u64 *)(b + 8);	/* opaque, kept as sent */
	out->offset = bpf_be64_to_cpu(*(const __u64 *)(b + 16));
	out->len = bpf_ntohl(*(const __u32 *)(b + 24));

	switch (out->cmd) {
	case NBD_CMD_READ:
		out->type = BSTEER_REQ_READ;
		break;
	case NBD_CMD_WRITE:
		out->type = BSTEER_REQ_WRITE;
		out->payload = 1;
		break;
	case NBD_CMD_FLUSH:
		out->type = BSTEER_REQ_FLUSH;
		break;
	case NBD_CMD_TRIM:
		out->type = BSTEER_REQ_TRIM;
		break;
	case NBD_CMD_WRITE_ZEROES:
		out->type = BSTEER_REQ_WRITE_ZEROES;
		break;
	case NBD_CMD_DISC:
	case NBD_CMD_CACHE:
	case NBD_CMD_BLOCK_STATUS:
		break;	/* the frontend answers these itself */
	default:
		out->error = -EINVAL;
		return;
	}
	ranged = out->cmd != NBD_CMD_DISC && out->cmd != NBD_CMD_FLUSH;
	if (out->flags & ~NBD_CMD_FLAGS_ALLOWED(out->cmd))
		out->error = -EINVAL;
	else if (ranged && !out->len)
		out->error = -EINVAL;
	else if (ranged && out->offset + out->len < out->offset)
		/* Past the end of any export: the spec's ENOSPC for writes. */
		out->error = out->cmd == NBD_CMD_WRITE ||
			     out->cmd == NBD_CMD_WRITE_ZEROES ? -ENOSPC : -EINVAL;
}

BSTEER_PARSER(nbd)
