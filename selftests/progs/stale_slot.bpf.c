// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Deliberately broken policy for the selftests: ops carry an old slot generation. */
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void stale_slot_decide(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;

	if (!bsteer_is_arrival(p) || p->res <= 0) {
		bsteer_join(p);
		return;
	}
	bsteer_seal(p, rq->slot);
	bsteer_emit(p, BSTEER_OP_WRITE, 0, rq->slot, 0, p->res, rq->offset);
	/* Decided for an earlier lease of the slot. */
	p->dec->ops[0].slot_gen--;
}

BSTEER_POLICY(stale_slot, 14)
