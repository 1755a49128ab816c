// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Deliberately broken policy for the selftests: one op index used twice in a decision. */
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void bad_dup_decide(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;

	if (!bsteer_is_arrival(p) || p->res <= 0) {
		bsteer_join(p);
		return;
	}
	bsteer_seal(p, rq->slot);
	if (bsteer_emit(p, BSTEER_OP_WRITE, 0, rq->slot, 0, p->res, rq->offset))
		return;
	/* The same op twice: two SQEs, one record. */
	p->dec->ops[1] = p->dec->ops[0];
	p->dec->nops = 2;
}

BSTEER_POLICY(bad_dup, 15)
