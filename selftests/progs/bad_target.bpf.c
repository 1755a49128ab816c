// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Deliberately broken policy for the selftests: a target that does not exist. */
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void bad_target_decide(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;

	if (!bsteer_is_arrival(p) || p->res <= 0) {
		bsteer_join(p);
		return;
	}
	bsteer_seal(p, rq->slot);
	bsteer_emit(p, BSTEER_OP_WRITE, 7, rq->slot, 0, p->res, rq->offset);
}

BSTEER_POLICY(bad_target, 11)
