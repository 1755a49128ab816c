// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * mirror: writes and flushes go to every healthy leg from one sealed slot;
 * reads go to the first healthy leg and move to the next one on error. A
 * leg that fails is taken out of service; the request succeeds while at
 * least one leg took the write.
 *
 * Request scratch: pstate[0] is the mask of legs that completed the op.
 */
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MIRROR_MAX_LEGS	BSTEER_DEC_OPS

static __always_inline int mirror_fanout(struct bsteer_pctx *p, __u8 opcode,
					 __u32 slot, __u32 len)
{
	__u64 off = opcode == BSTEER_OP_FSYNC || opcode == BSTEER_OP_FDATASYNC ?
		    0 : p->req->offset;
	__u32 n = bsteer_nlegs(p);
	int emitted = 0;
	__u32 i, t;

	for (i = 0; i < MIRROR_MAX_LEGS; i++) {
		if (i >= n)
			break;
		t = bsteer_leg(p, i);
		if (!bsteer_target_ok(t))
			continue;
		if (bsteer_emit(p, opcode, t, slot, 0, len, off))
			break;
		emitted++;
	}
	return emitted;
}

/* The target of the first healthy leg at or after leg @from; -1 if none. */
static __always_inline int mirror_pick(struct bsteer_pctx *p, __u32 from)
{
	__u32 n = bsteer_nlegs(p);
	__u32 i;

	for (i = 0; i < MIRROR_MAX_LEGS; i++) {
		if (i >= n)
			break;
		if (i >= from && bsteer_target_ok(bsteer_leg(p, i)))
			return bsteer_leg(p, i);
	}
	return -1;
}

static __always_inline void mirror_arrival(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;
	int leg;

	switch (rq->type) {
	case BSTEER_REQ_WRITE:
		bsteer_seal(p, rq->slot);
		if (p->res > 0 &&
		    !mirror_fanout(p, BSTEER_OP_WRITE, rq->slot, p->res))
			bsteer_note_error(p, -EIO);
		break;
	case BSTEER_REQ_FLUSH:
		if (!mirror_fanout(p, BSTEER_OP_FSYNC, BSTEER_NO_SLOT, 0))
			bsteer_note_error(p, -EIO);
		break;
	case BSTEER_REQ_TRIM:
	case BSTEER_REQ_WRITE_ZEROES:
		if (!mirror_fanout(p, bsteer_discard_op(rq), BSTEER_NO_SLOT,
				   rq->len))
			bsteer_note_error(p, -EIO);
		break;
	case BSTEER_REQ_READ:
		leg = mirror_pick(p, 0);
		if (leg < 0 || bsteer_emit(p, BSTEER_OP_READ, leg, rq->slot, 0,
					   rq->len, rq->offset))
			bsteer_note_error(p, -EIO);
		break;
	default:
		bsteer_note_error(p, -EOPNOTSUPP);
	}
}

static __always_inline void mirror_op_done(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;
	int leg;

	if (p->res >= 0) {
		rq->pstate[0] |= 1ull << (p->target & 63);
		return;
	}
	if (bsteer_err_transient(p->res) && !bsteer_retry(p))
		return;
	bsteer_target_fail(p, p->target, p->res);
	if (p->opcode == BSTEER_OP_READ) {
		leg = mirror_pick(p, p->target - p->req->tbase + 1);
		if (leg >= 0 && !bsteer_emit(p, BSTEER_OP_READ, leg, p->slot,
					     p->slot_off, p->len, p->offset))
			return;
	}
	bsteer_note_error(p, p->res);
}

static __always_inline void mirror_decide(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;

	if (bsteer_is_arrival(p)) {
		if (p->res < 0)
			bsteer_note_error(p, p->res);
		else
			mirror_arrival(p);
	} else {
		mirror_op_done(p);
	}
	if (rq->inflight || p->dec->nops)
		return;
	/* A write or flush stands if any leg took it. */
	if (rq->type != BSTEER_REQ_READ && rq->pstate[0])
		rq->error = 0;
	/* FUA: make it stable on every leg that took it, then answer. */
	if (bsteer_fua_due(p) &&
	    mirror_fanout(p, BSTEER_OP_FDATASYNC, BSTEER_NO_SLOT, 0))
		return;
	bsteer_join(p);
}

BSTEER_POLICY(mirror, BSTEER_POL_MIRROR)
