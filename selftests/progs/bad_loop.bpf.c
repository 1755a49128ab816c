// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Deliberately broken policy for the selftests: it never finishes. Each
 * completion asks for one more FDATASYNC of the target, written straight
 * into the decision so that bsteer_emit()'s own budget does not stop it:
 * the executor's per-request op budget must.
 */
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void bad_loop_decide(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;
	struct bsteer_decision *d = p->dec;
	struct bsteer_req_op *o = &rq->ops[1];

	o->state = BSTEER_OPS_INFLIGHT;
	o->seq++;
	o->opcode = BSTEER_OP_FDATASYNC;
	o->flags = 0;
	o->target = 0;
	o->slot = BSTEER_NO_SLOT;
	o->slot_off = 0;
	o->len = 0;
	o->done = 0;
	o->offset = 0;
	rq->inflight++;
	d->ops[0].opcode = BSTEER_OP_FDATASYNC;
	d->ops[0].op = 1;
	d->ops[0].target = 0;
	d->ops[0].slot = BSTEER_NO_SLOT;
	d->ops[0].slot_off = 0;
	d->ops[0].len = 0;
	d->ops[0].offset = 0;
	d->ops[0].flags = 0;
	d->ops[0].slot_gen = 0;
	d->nops = 1;
}

BSTEER_POLICY(bad_loop, 13)
