// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Deliberately broken policy for the selftests: another request's slot. */
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void bad_owner_decide(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;

	if (!bsteer_is_arrival(p) || p->res <= 0) {
		bsteer_join(p);
		return;
	}
	bsteer_seal(p, rq->slot);
	/* A slot that belongs to no request of ours. */
	bsteer_emit(p, BSTEER_OP_WRITE, 0, rq->slot ^ 1, 0, p->res, rq->offset);
}

BSTEER_POLICY(bad_owner, 9)
