// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Deliberately broken policy for the selftests: it answers the arrival
 * with nothing, no op and no completion, so no completion will ever come
 * back to the request. The executor must fail it rather than keep it.
 */
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void bad_idle_decide(struct bsteer_pctx *p)
{
	(void)p;
}

BSTEER_POLICY(bad_idle, 14)
