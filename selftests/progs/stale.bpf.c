// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Deliberately broken policy for the selftests: every decision carries the previous generation. */
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void stale_decide(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;

	if (!bsteer_is_arrival(p) || p->res <= 0) {
		bsteer_join(p);
		return;
	}
	bsteer_seal(p, rq->slot);
	bsteer_emit(p, BSTEER_OP_WRITE, 0, rq->slot, 0, p->res, rq->offset);
	/* Answer as if for the previous generation of this request. */
	p->cookie = bsteer_ud(p->req_idx, bsteer_ud_gen(p->cookie) - 1,
			      bsteer_ud_op(p->cookie), bsteer_ud_seq(p->cookie));
}

BSTEER_POLICY(stale, 13)
