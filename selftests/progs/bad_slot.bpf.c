// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Deliberately broken policy for the selftests: a slot past the end of the pool. */
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void bad_slot_decide(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;

	if (!bsteer_is_arrival(p) || p->res <= 0) {
		bsteer_join(p);
		return;
	}
	bsteer_seal(p, rq->slot);
	bsteer_emit(p, BSTEER_OP_WRITE, 0, 100000, 0, p->res, rq->offset);
}

BSTEER_POLICY(bad_slot, 8)
