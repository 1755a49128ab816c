// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Deliberately broken policy for the selftests: targets the frontend file. */
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void bad_frontend_decide(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;

	if (!bsteer_is_arrival(p) || p->res <= 0) {
		bsteer_join(p);
		return;
	}
	__u32 i;

	bsteer_seal(p, rq->slot);
	/* Write the payload back into the source, posing as the frontend. */
	if (bsteer_emit(p, BSTEER_OP_WRITE, BSTEER_MAX_TARGETS, rq->slot, 0,
			p->res, rq->offset))
		return;
	for (i = 0; i < BSTEER_REQ_OPS; i++)
		if (rq->ops[i].target == BSTEER_MAX_TARGETS)
			rq->ops[i].flags = BSTEER_OPF_FRONTEND;
}

BSTEER_POLICY(bad_frontend, 16)
