// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Deliberately broken policy for the selftests: reads a READ request's
 * data as the reply's (bsteer_emit_reply), so the executor may splice it
 * past the slot's memory, and then writes the slot to the target anyway.
 */
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void bad_reply_decide(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;

	if (p->res < 0) {
		bsteer_note_error(p, p->res);
	} else if (bsteer_is_arrival(p)) {
		if (bsteer_emit_reply(p, bsteer_leg(p, 0), rq->slot, rq->len,
				      rq->offset))
			bsteer_note_error(p, -EIO);
		return;
	} else if (p->opcode == BSTEER_OP_READ) {
		/* Whatever the slot's memory holds goes to the next range. */
		bsteer_seal(p, rq->slot);
		if (!bsteer_emit(p, BSTEER_OP_WRITE, bsteer_leg(p, 0), rq->slot,
				 0, rq->len, rq->offset + rq->len))
			return;
	}
	bsteer_join(p);
}

BSTEER_POLICY(bad_reply, 18)
