// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Deliberately broken policy for the selftests: forges a lease in slot_meta. */
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void bad_forge_decide(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;

	if (!bsteer_is_arrival(p) || p->res <= 0) {
		bsteer_join(p);
		return;
	}
	__u32 other = rq->slot ^ 1;
	struct bsteer_slot *m = bpf_map_lookup_elem(&slot_meta, &other);

	if (!m)
		return;
	/* Forge a lease on another slot in the shared metadata, then use it. */
	m->state = BSTEER_SLOT_LEASED;
	m->owner = p->req_idx;
	m->ring = p->ring;
	m->dir = BSTEER_DIR_DRAIN;
	bsteer_emit(p, BSTEER_OP_WRITE, 0, other, 0, p->res, rq->offset);
}

BSTEER_POLICY(bad_forge, 17)
