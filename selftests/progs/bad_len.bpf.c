// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Deliberately broken policy for the selftests: a length past the end of the slot. */
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void bad_len_decide(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;

	if (!bsteer_is_arrival(p) || p->res <= 0) {
		bsteer_join(p);
		return;
	}
	bsteer_seal(p, rq->slot);
	/* Past the end of the slot, into the next one. */
	bsteer_emit(p, BSTEER_OP_WRITE, 0, rq->slot, 4096, p->res + 4096,
		    rq->offset);
}

BSTEER_POLICY(bad_len, 12)
