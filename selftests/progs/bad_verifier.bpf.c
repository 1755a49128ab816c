// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Deliberately broken policy for the selftests: it reads past the request
 * record with an index it never bounds, which the verifier must refuse, so
 * that the load fails with a clear error and nothing is swapped in.
 */
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void bad_verifier_decide(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;
	volatile __u32 i = p->res;

	rq->pstate[0] = rq->pstate[i];	/* i is unbounded: out of the map value */
	bsteer_join(p);
}

BSTEER_POLICY(bad_verifier, 8)
