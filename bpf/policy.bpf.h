/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Policy authoring API.
 *
 * A policy is one function:
 *
 *	static __always_inline void NAME_decide(struct bsteer_pctx *p);
 *
 * called once for every finished op of an active request. It reads the
 * request (p->req), the op that finished (p->op, p->opcode, p->res,
 * p->target) and its configuration (p->cfg), and answers with the helpers
 * below: emit ops, seal or release the slot, mark a target failed, or
 * complete the request. BSTEER_POLICY(NAME, ID) then generates both hosts:
 *
 *	NAME_tp   SEC("tp_btf/io_uring_complete"), tail-called by the hook
 *	NAME_sys  SEC("syscall"), the BPF_PROG_RUN fallback over a batch
 *
 * so the policy is written once and runs the same in either.
 */
#ifndef BSTEER_POLICY_BPF_H
#define BSTEER_POLICY_BPF_H

#include "bsteer.bpf.h"

/* Events as a policy sees them. */
static __always_inline int bsteer_is_arrival(struct bsteer_pctx *p)
{
	/* The frontend's op finished: a request (and its payload) arrived. */
	return p->op_flags & BSTEER_OPF_FRONTEND;
}

/* The request's legs: bsteer_leg(p, 0 .. bsteer_nlegs(p) - 1). */
static __always_inline __u32 bsteer_nlegs(struct bsteer_pctx *p)
{
	__u32 n = p->req->tcount;

	return n > BSTEER_MAX_TARGETS ? BSTEER_MAX_TARGETS : n;
}

static __always_inline __u32 bsteer_leg(struct bsteer_pctx *p, __u32 i)
{
	return (p->req->tbase + i) & (BSTEER_MAX_TARGETS - 1);
}

static __always_inline struct bsteer_target *bsteer_target(__u32 t)
{
	return bpf_map_lookup_elem(&targets, &t);
}

static __always_inline int bsteer_target_ok(__u32 t)
{
	struct bsteer_target *tg = bsteer_target(t);

	return tg && !(tg->flags & BSTEER_TGT_FAILED);
}

/* Take a target out of service; the executor refuses ops to it from now. */
static __always_inline void bsteer_target_fail(struct bsteer_pctx *p, __u32 t,
					       __s32 err)
{
	struct bsteer_target *tg = bsteer_target(t);

	if (!tg || (tg->flags & BSTEER_TGT_FAILED))
		return;
	tg->flags |= BSTEER_TGT_FAILED;
	tg->last_error = err;
	stat_inc(BSTEER_ST_TARGETS_FAILED);
	emit_event(BSTEER_EV_TARGET_FAILED, p->cookie, p->ring, t, 0, 0, err);
}

/* What bsteer_emit() hands its out-of-line half (five arguments at most). */
struct bsteer_emit_args {
	__u32 req_idx;
	__u32 dec_key;		/* bsteer_dec_index(req_idx, op) */
	__u32 target;
	__u32 slot;
	__u32 slot_off;
	__u32 len;
	__u64 offset;
	__u8 opcode;
	__u8 pad[7];
};

/*
 * The work of bsteer_emit(), as a global function: the verifier checks it
 * once, on its own, and each call site sees only an int come back. Inlined
 * into a policy's split loops, its op-table scan multiplied the states the
 * verifier walks past its million-instruction limit on some kernels.
 */
__noinline int bsteer_emit_out(struct bsteer_emit_args *a)
{
	struct bsteer_req_op *o = NULL;
	struct bsteer_decision *d;
	struct bsteer_dop *dop;
	struct bsteer_slot *m;
	struct bsteer_req *req;
	__u32 i, n, key;

	if (!a)
		return -EINVAL;
	key = a->req_idx;
	req = bpf_map_lookup_elem(&reqs, &key);
	key = a->dec_key;
	d = bpf_map_lookup_elem(&decisions, &key);
	if (!req || !d)
		return -EINVAL;
	if (req->issued >= BSTEER_OP_BUDGET) {
		stat_inc(BSTEER_ST_BUDGET);
		return -EBUSY;
	}
	n = d->nops;
	if (n >= BSTEER_DEC_OPS)
		return -E2BIG;
	for (i = 0; i < BSTEER_REQ_OPS; i++) {
		if (req->ops[i].state == BSTEER_OPS_FREE) {
			o = &req->ops[i];
			break;
		}
	}
	if (!o)
		return -E2BIG;

	o->state = BSTEER_OPS_INFLIGHT;
	o->seq++;
	o->opcode = a->opcode;
	o->flags = 0;
	o->target = a->target;
	o->slot = a->slot;
	o->slot_off = a->slot_off;
	o->len = a->len;
	o->done = 0;
	o->offset = a->offset;
	req->inflight++;
	req->issued++;

	dop = &d->ops[n & (BSTEER_DEC_OPS - 1)];
	dop->opcode = a->opcode;
	dop->op = i;
	dop->target = a->target;
	dop->slot = a->slot;
	dop->slot_off = a->slot_off;
	dop->len = a->len;
	dop->offset = a->offset;
	dop->flags = 0;
	dop->slot_gen = 0;
	key = a->slot;
	m = bpf_map_lookup_elem(&slot_meta, &key);
	if (m)
		dop->slot_gen = m->gen;
	d->nops = n + 1;
	return 0;
}

/*
 * Emit one op for the request. Returns 0, or -E2BIG when the decision or
 * the request's op table is full, or -EBUSY when the request has used its
 * op budget. The op is recorded in the request so that its completion can
 * be matched; the executor still checks it before submitting.
 */
static __always_inline int bsteer_emit(struct bsteer_pctx *p, __u8 opcode,
				       __u32 target, __u32 slot, __u32 slot_off,
				       __u32 len, __u64 offset)
{
	struct bsteer_emit_args a = {
		.req_idx = p->req_idx,
		.dec_key = bsteer_dec_index(p->req_idx, p->op),
		.target = target,
		.slot = slot,
		.slot_off = slot_off,
		.len = len,
		.offset = offset,
		.opcode = opcode,
	};

	return bsteer_emit_out(&a);
}

/*
 * A READ whose bytes only go back to the client (BSTEER_OPF_REPLY): the
 * executor may splice them from the page cache to the socket without a
 * copy, so the slot's memory need not hold them, and nothing may use
 * them after (no WRITE from the slot).
 */
static __always_inline int bsteer_emit_reply(struct bsteer_pctx *p,
					     __u32 target, __u32 slot,
					     __u32 len, __u64 offset)
{
	struct bsteer_dop *dop;
	int err;

	err = bsteer_emit(p, BSTEER_OP_READ, target, slot, 0, len, offset);
	if (err)
		return err;
	dop = &p->dec->ops[(p->dec->nops - 1) & (BSTEER_DEC_OPS - 1)];
	dop->flags |= BSTEER_OPF_REPLY;
	p->req->ops[dop->op & (BSTEER_REQ_OPS - 1)].flags |= BSTEER_OPF_REPLY;
	return 0;
}

/*
 * The slot's payload is complete: from now on it may only be read. The
 * executor seals it before it submits this decision's ops.
 */
static __always_inline void bsteer_seal(struct bsteer_pctx *p, __u32 slot)
{
	p->dec->seal = slot;
}

/* The owner lets go of @slot; it returns once no op holds it. */
static __always_inline void bsteer_release(struct bsteer_pctx *p, __u32 slot)
{
	struct bsteer_decision *d = p->dec;
	__u32 n = d->nrelease;

	if (n < BSTEER_DEC_RELEASE) {
		d->release[n & (BSTEER_DEC_RELEASE - 1)] = slot;
		d->nrelease = n + 1;
	}
}

/* The request is finished with @err (0 or -errno). */
static __always_inline void bsteer_complete(struct bsteer_pctx *p, __s32 err)
{
	p->dec->flags |= BSTEER_DEC_DONE;
	p->dec->error = err;
}

/* Remember the first error of a request, for the join. */
static __always_inline void bsteer_note_error(struct bsteer_pctx *p, __s32 err)
{
	if (!p->req->error)
		p->req->error = err;
}

static __always_inline int bsteer_err_transient(__s32 err)
{
	return err == -EAGAIN || err == -EINTR;
}

/* The op that carries out a TRIM or WRITE_ZEROES request. */
static __always_inline __u8 bsteer_discard_op(struct bsteer_req *rq)
{
	if (rq->type == BSTEER_REQ_TRIM)
		return BSTEER_OP_PUNCH;
	return (rq->flags & BSTEER_REQF_NO_HOLE) ? BSTEER_OP_ZERO :
						   BSTEER_OP_PUNCH;
}

/*
 * FUA: once a write-like request's ops are all back, its data must be
 * stable before the reply. Returns true if the request still needs that
 * flush (and marks it asked for, in pstate[1]).
 */
static __always_inline int bsteer_fua_due(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;

	if (!(rq->flags & BSTEER_REQF_FUA) || rq->pstate[1] || rq->error ||
	    !(rq->type == BSTEER_REQ_WRITE || rq->type == BSTEER_REQ_TRIM ||
	      rq->type == BSTEER_REQ_WRITE_ZEROES))
		return 0;
	rq->pstate[1] = 1;
	return 1;
}

/* Submit the op that just finished once more, unchanged. */
static __always_inline int bsteer_retry(struct bsteer_pctx *p)
{
	return bsteer_emit(p, p->opcode, p->target, p->slot, p->slot_off,
			   p->len, p->offset);
}

/*
 * The join: when the last op of the request is back, release the data slot
 * and complete with the first error recorded (or 0).
 */
static __always_inline int bsteer_join(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;

	if (rq->inflight || p->dec->nops)
		return 0;
	if (rq->slot != BSTEER_NO_SLOT)
		bsteer_release(p, rq->slot);
	bsteer_complete(p, rq->error);
	return 1;
}

/*
 * The data layout a policy keeps on its targets, in an ELF section the
 * loader reads: "bsteer policy swap" only moves a live instance between
 * policies that keep the same layout (see docs/policies.md).
 */
#define BSTEER_LAYOUT(s)						\
	const char bsteer_layout[] SEC(".rodata.bsteer_layout")		\
		__attribute__((used)) = s

/* Ask to be called again for this request after @us microseconds. */
static __always_inline int bsteer_wait(struct bsteer_pctx *p, __u32 us)
{
	if (us > BSTEER_WAIT_MAX_US)
		us = BSTEER_WAIT_MAX_US;
	return bsteer_emit(p, BSTEER_OP_WAIT, 0, BSTEER_NO_SLOT, 0, us, 0);
}

/* The op that carries a piece of a request to a target. */
static __always_inline __u8 bsteer_data_op(struct bsteer_req *rq)
{
	switch (rq->type) {
	case BSTEER_REQ_READ:
		return BSTEER_OP_READ;
	case BSTEER_REQ_WRITE:
		return BSTEER_OP_WRITE;
	default:
		return bsteer_discard_op(rq);
	}
}

/* Flush every healthy leg (FLUSH requests, FUA). Returns ops emitted. */
static __always_inline int bsteer_flush_legs(struct bsteer_pctx *p, __u8 opcode)
{
	__u32 n = bsteer_nlegs(p), i, t;
	int emitted = 0;

	for (i = 0; i < BSTEER_DEC_OPS; i++) {
		if (i >= n)
			break;
		t = bsteer_leg(p, i);
		if (!bsteer_target_ok(t))
			continue;
		if (bsteer_emit(p, opcode, t, BSTEER_NO_SLOT, 0, 0, 0))
			break;
		emitted++;
	}
	return emitted;
}

/*
 * Splitting a request into pieces (stripe chunks, table ranges). The
 * policy provides
 *
 *	static __always_inline int NAME_piece(struct bsteer_pctx *p, __u64 pos,
 *					      __u32 *target, __u64 *toff,
 *					      __u32 *len);
 *
 * which maps byte @pos of the request (0 = its first byte) to a target,
 * the target's offset, and how many bytes from there stay on that target
 * (at most *len on entry). BSTEER_SPLIT(p, NAME) emits the pieces not yet
 * handed out, as many as the decision holds; pstate[0] counts the bytes
 * handed out, so each later completion sends the next wave. A piece's
 * data sits at its own offset within the request's one slot.
 */
#define BSTEER_SPLIT_DONE(p) ((p)->req->pstate[0] >= (p)->req->len)

#define BSTEER_SPLIT(p, name)						\
({									\
	struct bsteer_req *__rq = (p)->req;				\
	__u8 __opc = bsteer_data_op(__rq);				\
	int __err = 0;							\
	__u32 __i;							\
									\
	for (__i = 0; __i < BSTEER_DEC_OPS; __i++) {			\
		__u64 __pos = __rq->pstate[0], __toff = 0;		\
		__u32 __t = 0, __len;					\
		__u32 __slot = BSTEER_NO_SLOT, __soff = 0;		\
									\
		if (__pos >= __rq->len)					\
			break;						\
		__len = __rq->len - __pos;				\
		__err = name##_piece((p), __pos, &__t, &__toff, &__len); \
		if (__err)						\
			break;						\
		if (__opc == BSTEER_OP_READ || __opc == BSTEER_OP_WRITE) { \
			__slot = __rq->slot;				\
			__soff = __pos;					\
		}							\
		if (bsteer_emit((p), __opc, __t, __slot, __soff, __len,	\
				__toff))				\
			break;						\
		__rq->pstate[0] = __pos + __len;			\
	}								\
	if (__err) {							\
		bsteer_note_error((p), __err);				\
		__rq->pstate[0] = __rq->len;	/* hand out no more */	\
	}								\
	__err;								\
})

/*
 * A whole policy for layouts that split requests (stripe, redirect): data
 * requests go out piece by piece, a FLUSH goes to every leg, a failed
 * piece fails the request (no redundancy to fall back on).
 */
#define BSTEER_SPLIT_DECIDE(p, name)					\
do {									\
	struct bsteer_req *__r = (p)->req;				\
									\
	if ((p)->res < 0) {						\
		if (bsteer_err_transient((p)->res) && !bsteer_retry(p))	\
			break;						\
		bsteer_note_error((p), (p)->res);			\
		__r->pstate[0] = __r->len;				\
	} else if (bsteer_is_arrival(p)) {				\
		if (__r->type == BSTEER_REQ_FLUSH) {			\
			if (!bsteer_flush_legs((p), BSTEER_OP_FSYNC))	\
				bsteer_note_error((p), -EIO);		\
		} else if (__r->type == BSTEER_REQ_NONE) {		\
			bsteer_note_error((p), -EOPNOTSUPP);		\
		} else {						\
			if (__r->type == BSTEER_REQ_WRITE)		\
				bsteer_seal((p), __r->slot);		\
			BSTEER_SPLIT((p), name);			\
		}							\
	} else if (!BSTEER_SPLIT_DONE(p)) {				\
		BSTEER_SPLIT((p), name);				\
	}								\
	if (__r->inflight || (p)->dec->nops)				\
		break;							\
	if (bsteer_fua_due(p) &&					\
	    bsteer_flush_legs((p), BSTEER_OP_FDATASYNC))		\
		break;							\
	bsteer_join(p);							\
} while (0)

/* The wrapper lets NAME be a macro itself (bpf/policy/mirror.bpf.c). */
#define BSTEER_POLICY(name, id)	BSTEER_POLICY_(name, id)
#define BSTEER_POLICY_(name, id)					\
SEC("tp_btf/io_uring_complete")						\
int name##_tp(__u64 *ctx)						\
{									\
	struct bsteer_pctx p = {};					\
	struct bsteer_scratch *s;					\
	__u32 zero = 0;							\
	int rc;								\
									\
	s = bpf_map_lookup_elem(&scratch, &zero);			\
	if (!s)								\
		return 0;						\
	rc = core_begin(&p, s->user_data, s->res, s->ring);		\
	if (rc == CORE_IGNORE)						\
		return 0;						\
	if (rc == CORE_POLICY)						\
		name##_decide(&p);					\
	core_finish(&p, BSTEER_ST_DEC_HOOK, id);				\
	return 0;							\
}									\
									\
BSTEER_FALLBACK_HOST(name, name##_decide, id)				\
									\
SEC("syscall")								\
int name##_sys(struct bsteer_fallback_args *args)			\
{									\
	return name##_fallback(args);					\
}

#endif /* BSTEER_POLICY_BPF_H */
