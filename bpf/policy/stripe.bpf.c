// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * stripe: the export is cut into chunks of cfg word 0 bytes (default
 * 64 KiB), dealt round the legs in turn, like RAID 0 or dm-stripe. Chunk c
 * lives on leg c % N at leg offset (c / N) * chunk. A request that spans
 * chunks becomes one op per piece, all on the request's one slot, each at
 * its own offset within it, joined before the reply.
 */
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
BSTEER_LAYOUT("stripe");

#define STRIPE_DEF_CHUNK	(64 * 1024)

static __always_inline int stripe_piece(struct bsteer_pctx *p, __u64 pos,
					__u32 *target, __u64 *toff, __u32 *len)
{
	__u64 chunk = p->cfg->word[0] ?: STRIPE_DEF_CHUNK;
	__u64 at = p->req->offset + pos, c, within;
	__u32 n = bsteer_nlegs(p);

	if (!n)
		return -EIO;
	c = at / chunk;
	within = at - c * chunk;
	*target = bsteer_leg(p, c % n);
	*toff = (c / n) * chunk + within;
	if (*len > chunk - within)
		*len = chunk - within;
	return 0;
}

static __always_inline void stripe_decide(struct bsteer_pctx *p)
{
	BSTEER_SPLIT_DECIDE(p, stripe);
}

BSTEER_POLICY(stripe, BSTEER_POL_STRIPE)
