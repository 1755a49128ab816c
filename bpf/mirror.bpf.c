// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * mirror: writes and flushes go to every healthy leg from one sealed slot;
 * a read goes to one healthy leg and moves to the next one on error. A leg
 * that fails is taken out of service; the request succeeds while at least
 * one leg took the write.
 *
 * Which leg serves a read: cfg word 0, MIRROR_READ_* (0 = this object's
 * default). The same source builds three objects that differ only in that
 * default: mirror (primary), mirror_rr (round-robin) and mirror_lif (least
 * in flight). All keep the same layout, so they swap freely under load.
 *
 * Request scratch: pstate[0] is the mask of legs that completed the op.
 */
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
BSTEER_LAYOUT("replica");

#define MIRROR_MAX_LEGS	BSTEER_DEC_OPS

enum {
	MIRROR_READ_DEFAULT	= 0,
	MIRROR_READ_PRIMARY	= 1,	/* the first healthy leg */
	MIRROR_READ_RR		= 2,	/* each read to the next leg */
	MIRROR_READ_LIF		= 3,	/* the leg with the fewest ops out */
};

#define MIRROR_CAT(a, b)	a##_##b
#define MIRROR_CAT2(a, b)	MIRROR_CAT(a, b)
#define MIRROR_FN(x)		MIRROR_CAT2(MIRROR_NAME, x)

#ifndef MIRROR_NAME
#define MIRROR_NAME	mirror
#define MIRROR_ID	BSTEER_POL_MIRROR
#define MIRROR_READ	MIRROR_READ_PRIMARY
#endif

/* The round-robin cursor, shared by every mirror object of the instance. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} mirror_rr SEC(".maps");

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

/* The leg a new read goes to, by the configured read mode; -1 if none. */
static __always_inline int mirror_read_leg(struct bsteer_pctx *p)
{
	__u32 mode = p->cfg->word[0] ?: MIRROR_READ;
	__u32 n = bsteer_nlegs(p), i, k, t, zero = 0, start = 0;
	__u64 best = ~0ull, *cur;
	struct bsteer_target *tg;
	int pick = -1;

	if (n > MIRROR_MAX_LEGS)
		n = MIRROR_MAX_LEGS;
	if (mode == MIRROR_READ_RR && n) {
		cur = bpf_map_lookup_elem(&mirror_rr, &zero);
		if (cur)
			start = __sync_fetch_and_add(cur, 1) % n;
	}
	for (i = 0; i < MIRROR_MAX_LEGS; i++) {
		if (i >= n)
			break;
		k = start + i;
		if (k >= n)
			k -= n;
		t = bsteer_leg(p, k);
		tg = bsteer_target(t);
		if (!tg || (tg->flags & BSTEER_TGT_FAILED))
			continue;
		if (mode != MIRROR_READ_LIF)
			return t;
		if (tg->inflight < best) {
			best = tg->inflight;
			pick = t;
		}
	}
	return pick;
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
		leg = mirror_read_leg(p);
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

static __always_inline void MIRROR_FN(decide)(struct bsteer_pctx *p)
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

BSTEER_POLICY(MIRROR_NAME, MIRROR_ID)
