// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* passthrough: every request goes to its first leg, unchanged. */
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
BSTEER_LAYOUT("linear");

static __always_inline void passthrough_arrival(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;
	int err = 0;

	switch (rq->type) {
	case BSTEER_REQ_WRITE:
		/* p->res is the payload the frontend received. */
		bsteer_seal(p, rq->slot);
		if (p->res > 0)
			err = bsteer_emit(p, BSTEER_OP_WRITE, bsteer_leg(p, 0),
					  rq->slot, 0, p->res, rq->offset);
		break;
	case BSTEER_REQ_READ:
		err = bsteer_emit_reply(p, bsteer_leg(p, 0), rq->slot, rq->len,
					rq->offset);
		break;
	case BSTEER_REQ_FLUSH:
		err = bsteer_emit(p, BSTEER_OP_FSYNC, bsteer_leg(p, 0),
				  BSTEER_NO_SLOT, 0, 0, 0);
		break;
	case BSTEER_REQ_TRIM:
	case BSTEER_REQ_WRITE_ZEROES:
		err = bsteer_emit(p, bsteer_discard_op(rq), bsteer_leg(p, 0),
				  BSTEER_NO_SLOT, 0, rq->len, rq->offset);
		break;
	default:
		err = -EOPNOTSUPP;
	}
	if (err)
		bsteer_note_error(p, err);
}

static __always_inline void passthrough_decide(struct bsteer_pctx *p)
{
	if (p->res < 0) {
		if (bsteer_err_transient(p->res) && !bsteer_retry(p))
			return;
		bsteer_note_error(p, p->res);
	} else if (bsteer_is_arrival(p)) {
		passthrough_arrival(p);
	}
	if (!p->req->inflight && !p->dec->nops && bsteer_fua_due(p) &&
	    !bsteer_emit(p, BSTEER_OP_FDATASYNC, bsteer_leg(p, 0),
			 BSTEER_NO_SLOT, 0, 0, 0))
		return;
	bsteer_join(p);
}

BSTEER_POLICY(passthrough, BSTEER_POL_PASSTHROUGH)
