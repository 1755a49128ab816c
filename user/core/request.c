// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Request records of one ring: allocated by an owner (a frontend, a copy,
 * a rebuild), finished by the policy, kept by a frontend that still sends
 * from the slot, and returned once no op of theirs is out.
 */
#include <errno.h>
#include "core/engine.h"

int bsteer_req_alloc(struct bsteer_engine *e, int owner, __u8 type,
		     __u64 offset, __u32 len, __u32 *out)
{
	struct bsteer_req *rq;
	__u32 r, i, k;

	if (owner < 0 || (__u32)owner >= e->nowners)
		return -EINVAL;
	if (!e->req_top)
		return -EBUSY;
	r = e->req_stack[--e->req_top];
	k = r - e->req_base;
	rq = &e->in->reqs[r];
	rq->gen = (rq->gen + 1) & BSTEER_GEN_MASK;
	rq->state = BSTEER_RQ_ACTIVE;
	rq->type = type;
	rq->ring = e->id;
	rq->offset = offset;
	rq->len = len;
	rq->slot = BSTEER_NO_SLOT;
	rq->inflight = 0;
	rq->issued = 0;
	rq->error = 0;
	rq->flags = 0;
	rq->tbase = 0;
	rq->tcount = e->ntargets;
	rq->start_ns = e->now_ns;
	rq->pstate[0] = rq->pstate[1] = 0;
	for (i = 0; i < BSTEER_REQ_OPS; i++) {
		rq->ops[i].state = BSTEER_OPS_FREE;
		/* No answer from an earlier life of this index can match. */
		e->in->decs[(size_t)r * BSTEER_REQ_OPS + i].cookie = 0;
	}
	e->submitted[k] = 0;
	e->req_state[k] = BSTEER_RQ_ACTIVE;
	e->req_slot[k] = BSTEER_NO_SLOT;
	e->req_keep[k] = 0;
	e->req_issued[k] = 0;
	e->req_owner[k] = owner;
	bsteer_stat_add(e->in, BSTEER_ST_REQS_STARTED, 1);
	*out = r;
	return 0;
}

const struct bsteer_owner *req_owner(struct bsteer_engine *e, __u32 r)
{
	return &e->owner[e->req_owner[r - e->req_base]];
}

int bsteer_req_set_legs(struct bsteer_engine *e, __u32 r, __u32 base,
			__u32 count)
{
	if (!count || base >= e->ntargets || count > e->ntargets - base)
		return -EINVAL;
	e->in->reqs[r].tbase = base;
	e->in->reqs[r].tcount = count;
	return 0;
}

void bsteer_req_abandon(struct bsteer_engine *e, __u32 r)
{
	__u32 i = r - e->req_base;

	if (r < e->req_base || i >= e->req_count ||
	    e->req_state[i] != BSTEER_RQ_ACTIVE || e->submitted[i])
		return;
	if (slot_mine(e, e->req_slot[i]) && sp(e, e->req_slot[i])->owner == r)
		bsteer_slot_release(e, e->req_slot[i]);
	e->req_state[i] = BSTEER_RQ_FREE;
	e->in->reqs[r].state = BSTEER_RQ_FREE;
	e->req_stack[e->req_top++] = r;
}

__u32 bsteer_reqs_free(struct bsteer_engine *e)
{
	return e->req_top;
}

/* A finished request's record returns once none of its ops is out. */
void req_maybe_free(struct bsteer_engine *e, __u32 r)
{
	__u32 i = r - e->req_base;

	if (e->req_state[i] != BSTEER_RQ_DONE || e->submitted[i] ||
	    e->req_keep[i])
		return;
	e->req_state[i] = BSTEER_RQ_FREE;
	e->in->reqs[r].state = BSTEER_RQ_FREE;
	e->req_stack[e->req_top++] = r;
}

void req_finish(struct bsteer_engine *e, __u32 r, int err)
{
	__u32 i = r - e->req_base, s = e->req_slot[i];
	const struct bsteer_owner *o = req_owner(e, r);

	if (e->req_state[i] != BSTEER_RQ_ACTIVE)
		return;
	e->req_state[i] = BSTEER_RQ_DONE;
	e->in->reqs[r].state = BSTEER_RQ_DONE;
	bsteer_stat_add(e->in, err ? BSTEER_ST_REQS_FAILED : BSTEER_ST_REQS_DONE, 1);
	if (o->ops && o->ops->complete)
		o->ops->complete(o->arg, r, err);
	/*
	 * The lease dies with the request, whatever the policy said, unless
	 * the owner kept it to send from (bsteer_req_keep).
	 */
	if (!e->req_keep[i] && slot_mine(e, s) && sp(e, s)->owner == r)
		bsteer_slot_release(e, s);
}

void bsteer_req_keep(struct bsteer_engine *e, __u32 r)
{
	e->req_keep[r - e->req_base] = 1;
}

void bsteer_req_put(struct bsteer_engine *e, __u32 r)
{
	__u32 i = r - e->req_base, s = e->req_slot[i];

	if (!e->req_keep[i])
		return;
	e->req_keep[i] = 0;
	if (slot_mine(e, s) && sp(e, s)->owner == r)
		bsteer_slot_release(e, s);
	req_maybe_free(e, r);
}
