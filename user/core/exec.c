// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The executor: carries out the decisions the policy wrote, after checking
 * each one against the engine's own records. It makes no decision itself.
 *
 * A decision is copied out of the shared map first and only the copy is
 * checked and used. Each op then goes to its target's module (or, for a
 * frontend's own op, straight into an SQE): the core never names a target.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include "core/engine.h"

#define OPF_LINK	0x20000000u	/* engine's own: link the next SQE to it */
#define OPF_OWN		0x40000000u	/* ... no SQE: the frontend completes it */
#define OPF_RECV	0x10000000u	/* ... a socket's receive, whole or EOF */

/*
 * Does policy op READ of @len at @slot_off go into the slot's pipe? Only
 * a reply's read, long enough to pay for the pipe, from a target that can
 * splice, and only in order: the pipe is a stream, so it must start where
 * the pipe's data ends, with nothing else in flight on the slot.
 */
static bool splice_op(struct bsteer_engine *e, __u32 r, __u8 opcode, __u32 flags,
		      __u32 file, __u32 slot, __u32 slot_off, __u32 len)
{
	const struct bsteer_owner *ow = req_owner(e, r);
	struct bsteer_slot_priv *p;

	/* Only an owner that sends from the pipe (a socket's reply) gets one. */
	if (!e->splice_reads || !ow->ops || !ow->ops->pipes ||
	    opcode != BSTEER_OP_READ ||
	    !(flags & BSTEER_OPF_REPLY) || !slot_mine(e, slot) ||
	    file >= e->ntargets || !tgt_ops(e, file)->splice)
		return false;
	p = sp(e, slot);
	if (p->pipe_fill)	/* the rest of a short splice, whatever its size */
		return slot_off == p->pipe_fill && !p->inflight;
	return len > BSTEER_SPLICE_ABOVE && !slot_off && !p->inflight;
}

/* A slot's data goes to its pipe, or is there: what may not touch it. */
static const char *check_piped(struct bsteer_engine *e, __u32 r,
			       const struct bsteer_dop *d)
{
	struct bsteer_slot_priv *p = sp(e, d->slot);

	if (!p->pipe_fill && !p->piping)
		return NULL;
	if (d->opcode == BSTEER_OP_WRITE)
		return "write from a slot whose data is in its pipe (a reply's read)";
	if (d->opcode == BSTEER_OP_READ &&
	    !splice_op(e, r, d->opcode, d->flags, d->target, d->slot, d->slot_off,
		       d->len))
		return "read into a slot out of its pipe's order";
	return NULL;
}

/* An engine-level op: the arrival NOP, a WAIT, a frontend's own transfer. */
static int prep_sqe(struct bsteer_engine *e, struct bsteer_op_priv *o,
		    __u8 opcode, __u32 file, __u32 slot, void *buf, __u32 len,
		    __u64 offset, __u64 ud, __u32 flags)
{
	struct io_uring_sqe *sqe = bsteer_engine_sqe(e);

	if (!sqe)
		return -EBUSY;
	switch (opcode) {
	case BSTEER_OP_READ:
		if (flags & OPF_RECV)
			/*
			 * The kernel retries a short receive itself until
			 * all @len are in: one CQE per payload, and the
			 * header linked behind it is not cancelled by one.
			 */
			io_uring_prep_recv(sqe, file, buf, len, MSG_WAITALL);
		else
			io_uring_prep_read_fixed(sqe, file, buf, len, offset, slot);
		sqe->flags |= IOSQE_FIXED_FILE;
		break;
	case BSTEER_OP_WRITE:
		io_uring_prep_write_fixed(sqe, file, buf, len, offset, slot);
		sqe->flags |= IOSQE_FIXED_FILE;
		break;
	case BSTEER_OP_WAIT:
		/* A pure timeout; the core reads its -ETIME as 0. */
		o->wait.tv_sec = len / 1000000;
		o->wait.tv_nsec = (len % 1000000) * 1000ll;
		io_uring_prep_timeout(sqe, &o->wait, 0, 0);
		break;
	default:		/* the arrival NOP; @len: a payload in the slot */
		if (len)
			bsteer_prep_nop_result(sqe, len);
		else
			io_uring_prep_nop(sqe);
		break;
	}
	io_uring_sqe_set_data64(sqe, ud);
	if (flags & OPF_LINK)
		sqe->flags |= IOSQE_IO_LINK;
	return 0;
}

/* Hand a policy op to its target's module. */
static int target_submit(struct bsteer_engine *e, bool piped, __u32 op,
			 __u8 opcode, __u32 t, __u32 slot, void *buf,
			 __u32 len, __u64 offset, __u32 flags, __u64 ud)
{
	const struct bsteer_target_ops *ops = tgt_ops(e, t);
	struct bsteer_target_io io = {
		.ud = ud, .buf = buf, .slot = slot, .len = len,
		.offset = offset, .op = op, .opcode = opcode,
		.hints = (flags >> 16) & 0xff,
	};

	if (piped)
		return ops->splice(e, t, &io, sp(e, slot)->pipe[1]);
	/* A data op needs the slot's memory; nothing else has any. */
	if ((opcode == BSTEER_OP_READ || opcode == BSTEER_OP_WRITE) != !!buf)
		return -EINVAL;
	return ops->submit(e, t, &io);
}

/*
 * Turn op @op of request @r (already recorded) into an SQE, or into
 * whatever its target's module does with it, completing with its ud.
 */
static int submit_op(struct bsteer_engine *e, __u32 r, __u32 op, __u8 opcode,
		     __u32 file, __u32 slot, __u32 slot_off, __u32 len,
		     __u64 offset, __u32 flags, bool frontend)
{
	struct bsteer_req *rq = &e->in->reqs[r];
	struct bsteer_op_priv *o = opp(e, r, op);
	__u64 ud = bsteer_ud(r, rq->gen, op, rq->ops[op].seq);
	bool policy_io = !frontend && opcode != BSTEER_OP_WAIT;
	bool piped = !frontend && splice_op(e, r, opcode, flags, file, slot,
					    slot_off, len);
	void *buf = NULL;
	int err;

	if (opcode >= BSTEER_OP__MAX)
		return -EINVAL;
	o->piped = 0;
	/* Only the frontend's own ops (and their rest) start in the headroom. */
	if (!frontend)
		o->prefix = 0;
	if (slot != BSTEER_NO_SLOT)
		buf = bsteer_slot_data(e->in, slot) + slot_off - o->prefix;
	if (policy_io && file < e->ntargets &&
	    (__atomic_load_n(&e->in->targets[file].flags, __ATOMIC_ACQUIRE) &
	     BSTEER_TGT_FAILED))
		/*
		 * The target failed after the policy chose it (another op's
		 * completion, decided in the same batch, took it out): nothing
		 * reaches it, and the op completes at once with EIO, which the
		 * policy sees as that leg's error.
		 */
		err = bsteer_target_complete(e, ud, -EIO);
	else if (policy_io && file < e->ntargets) {
		o->piped = piped;
		err = target_submit(e, piped, o - e->op, opcode, file, slot,
				    buf, len, offset, flags, ud);
	} else if (frontend && (flags & OPF_OWN)) {
		err = 0;	/* bsteer_frontend_op_own(): the frontend posts it */
	} else {
		err = prep_sqe(e, o, opcode, file, slot, buf, len, offset, ud,
			       frontend ? flags & (OPF_LINK | OPF_RECV) : 0);
	}
	if (err) {
		o->piped = 0;
		return err;
	}
	o->slot = slot;
	o->target = file;
	o->frontend = frontend;
	o->opcode = opcode;
	o->slot_off = slot_off;
	o->len = len;
	o->res = 0;
	if (o->piped) {
		sp(e, slot)->piping++;
		bsteer_stat_add(e->in, BSTEER_ST_SPLICED_READS, 1);
	}
	if (slot != BSTEER_NO_SLOT) {
		sp(e, slot)->inflight++;
		__atomic_fetch_add(&e->in->meta[slot].inflight, 1, __ATOMIC_RELEASE);
	}
	if (target_op(e, o)) {
		__atomic_fetch_add(&e->in->targets[file].inflight, 1,
				   __ATOMIC_RELAXED);
		o->t0 = bsteer_now_ns();
	}
	e->submitted[r - e->req_base] |= 1u << op;
	e->inflight_sqes++;
	bsteer_stat_add(e->in, BSTEER_ST_OPS_SUBMITTED, 1);
	return 0;
}

static int frontend_op(struct bsteer_engine *e, __u32 r, __u8 opcode,
		       __u32 file, __u32 slot, __u32 prefix, __u32 len,
		       __u64 offset, __u32 flags, __u64 *ud)
{
	struct bsteer_req *rq = &e->in->reqs[r];
	struct bsteer_req_op *o = NULL;
	__u32 i;

	for (i = 0; i < BSTEER_REQ_OPS; i++) {
		if (rq->ops[i].state == BSTEER_OPS_FREE &&
		    !(e->submitted[r - e->req_base] & (1u << i))) {
			o = &rq->ops[i];
			break;
		}
	}
	if (!o)
		return -EBUSY;
	o->state = BSTEER_OPS_INFLIGHT;
	o->seq++;
	o->opcode = opcode;
	o->flags = BSTEER_OPF_FRONTEND;
	o->target = file;
	o->slot = slot;
	/* The hooks see prefix and data as one run from slot_off 0. */
	o->slot_off = 0;
	o->len = prefix + len;
	o->done = 0;
	o->offset = offset;
	rq->inflight++;
	rq->issued++;
	/* A frontend sends a slot only once its contents are final. */
	if (opcode == BSTEER_OP_WRITE && slot_mine(e, slot) &&
	    sp(e, slot)->owner == r) {
		sp(e, slot)->dir = BSTEER_DIR_DRAIN;
		e->in->meta[slot].dir = BSTEER_DIR_DRAIN;
	}
	opp(e, r, i)->prefix = prefix;
	if (ud)
		*ud = bsteer_ud(r, rq->gen, i, o->seq);
	return submit_op(e, r, i, opcode, file, slot, 0, prefix + len, offset,
			 flags, true);
}

int bsteer_frontend_op(struct bsteer_engine *e, __u32 r, __u8 opcode,
		       __u32 file, __u32 slot, __u32 len, __u64 offset)
{
	return frontend_op(e, r, opcode, file, slot, 0, len, offset, 0, NULL);
}

int bsteer_frontend_op_linked(struct bsteer_engine *e, __u32 r, __u8 opcode,
			      __u32 file, __u32 slot, __u32 len, __u64 offset)
{
	return frontend_op(e, r, opcode, file, slot, 0, len, offset, OPF_LINK, NULL);
}

int bsteer_frontend_recv(struct bsteer_engine *e, __u32 r, __u32 file,
			 __u32 slot, __u32 len, bool link)
{
	if (slot == BSTEER_NO_SLOT || !len)
		return -EINVAL;
	return frontend_op(e, r, BSTEER_OP_READ, file, slot, 0, len,
			   BSTEER_OFF_STREAM, OPF_RECV | (link ? OPF_LINK : 0),
			   NULL);
}

int bsteer_frontend_send_prefixed(struct bsteer_engine *e, __u32 r,
				  __u32 file, __u32 slot, __u32 prefix,
				  __u32 len)
{
	if (slot == BSTEER_NO_SLOT || prefix > BSTEER_SLOT_HEADROOM ||
	    len > e->in->slot_size || prefix > e->in->slot_size - len)
		return -EINVAL;
	return frontend_op(e, r, BSTEER_OP_WRITE, file, slot, prefix, len,
			   BSTEER_OFF_STREAM, 0, NULL);
}

int bsteer_frontend_op_own(struct bsteer_engine *e, __u32 r, __u8 opcode,
			   __u32 file, __u32 slot, __u32 prefix, __u32 len,
			   __u64 *ud)
{
	if ((opcode != BSTEER_OP_READ && opcode != BSTEER_OP_WRITE) ||
	    slot == BSTEER_NO_SLOT || !len || prefix > BSTEER_SLOT_HEADROOM ||
	    (opcode == BSTEER_OP_READ && prefix) ||
	    len > e->in->slot_size || prefix > e->in->slot_size - len)
		return -EINVAL;
	return frontend_op(e, r, opcode, file, slot, prefix, len,
			   BSTEER_OFF_STREAM, OPF_OWN, ud);
}

/* ---- checks ---- */

/*
 * Check one op of a decision against the engine's own records. @cqe_op is
 * the op whose completion this decision answers: only that op may be
 * resubmitted to a frontend file (the rest of a short transfer). Returns
 * NULL if the op may run, or why not.
 */
static const char *check_op(struct bsteer_engine *e, __u32 r, __u32 cqe_op,
			    const struct bsteer_dop *d)
{
	struct bsteer_instance *in = e->in;
	struct bsteer_req *rq = &in->reqs[r];
	const struct bsteer_op_priv *prev;
	const struct bsteer_req_op *o;
	const struct bsteer_slot_priv *p;
	bool data = d->opcode == BSTEER_OP_READ || d->opcode == BSTEER_OP_WRITE;

	if (d->opcode == BSTEER_OP_NOP || d->opcode >= BSTEER_OP__MAX)
		return "unknown opcode";
	if (d->op >= BSTEER_REQ_OPS)
		return "op index out of range";
	if (e->submitted[r - e->req_base] & (1u << d->op))
		return "op already in flight";
	prev = opp(e, r, d->op);
	if (d->opcode == BSTEER_OP_WAIT) {
		if (d->len > BSTEER_WAIT_MAX_US)
			return "wait longer than BSTEER_WAIT_MAX_US";
	} else if (d->target < e->ntargets) {
		const struct bsteer_target *t = &in->targets[d->target];

		/* A failed target is not refused here: see submit_op(). */
		if ((d->opcode == BSTEER_OP_WRITE || d->opcode == BSTEER_OP_PUNCH ||
		     d->opcode == BSTEER_OP_ZERO) && (t->flags & BSTEER_TGT_RDONLY))
			return "write to a read-only target";
	} else if (!(d->op == cqe_op && prev->frontend &&
		     prev->target == d->target && prev->slot == d->slot &&
		     prev->opcode == d->opcode && prev->res > 0 &&
		     (__u32)prev->res < prev->len &&
		     d->len == prev->len - prev->res &&
		     d->slot_off == prev->slot_off + prev->res)) {
		/* Only the rest of the frontend's own short transfer. */
		return "target out of range";
	}
	o = &rq->ops[d->op];
	if (o->state != BSTEER_OPS_INFLIGHT || o->opcode != d->opcode ||
	    o->target != d->target || o->slot != d->slot ||
	    o->slot_off + o->done != d->slot_off || o->len - o->done != d->len ||
	    (o->offset != BSTEER_OFF_STREAM && o->offset + o->done != d->offset))
		return "op does not match the request's record";
	if (!data)
		return d->slot == BSTEER_NO_SLOT ? NULL : "slot on a non-data op";
	if (!slot_mine(e, d->slot))
		return "slot out of range";
	p = sp(e, d->slot);
	if (p->owner != r || !(p->state == BSTEER_SLOT_LEASED ||
			       (p->state == BSTEER_SLOT_RELEASING &&
				d->target >= e->ntargets)))
		return "slot not leased to this request";
	if (p->gen != d->slot_gen)
		return "stale slot generation";
	if (!d->len || d->slot_off >= in->slot_size ||
	    d->len > in->slot_size - d->slot_off)
		return "length outside the slot";
	if (d->opcode == BSTEER_OP_READ && !(p->dir & BSTEER_DIR_FILL))
		return "read into a slot sealed for draining";
	if (d->opcode == BSTEER_OP_WRITE && !(p->dir & BSTEER_DIR_DRAIN))
		return "write from a slot not sealed";
	return check_piped(e, r, d);
}

static const char *check_decision(struct bsteer_engine *e, __u32 r,
				  __u32 cqe_op, const struct bsteer_decision *d)
{
	__u32 i, seen = 0;
	const char *why;

	if (d->nops > BSTEER_DEC_OPS || d->nrelease > BSTEER_DEC_RELEASE)
		return "malformed decision";
	for (i = 0; i < d->nops; i++) {
		why = check_op(e, r, cqe_op, &d->ops[i]);
		if (why)
			return why;
		if (seen & (1u << d->ops[i].op))
			return "op index used twice";
		seen |= 1u << d->ops[i].op;
	}
	for (i = 0; i < d->nrelease; i++) {
		__u32 s = d->release[i];

		if (!slot_mine(e, s) || sp(e, s)->owner != r ||
		    sp(e, s)->state != BSTEER_SLOT_LEASED)
			return "release of a slot the request does not hold";
	}
	return NULL;
}

/* Drop from the books the ops a policy recorded that never got an SQE. */
void reject_pending_ops(struct bsteer_engine *e, __u32 r)
{
	struct bsteer_req *rq = &e->in->reqs[r];
	__u32 i;

	for (i = 0; i < BSTEER_REQ_OPS; i++) {
		struct bsteer_req_op *o = &rq->ops[i];

		if (o->state == BSTEER_OPS_INFLIGHT &&
		    !(e->submitted[r - e->req_base] & (1u << i))) {
			o->state = BSTEER_OPS_FREE;
			if (rq->inflight)
				rq->inflight--;
		}
	}
}

static void reject(struct bsteer_engine *e, __u32 r, const char *why)
{
	bsteer_stat_add(e->in, BSTEER_ST_DEC_REJECTED, 1);
	e->st.rejected++;
	if (e->opts.verbose || e->st.rejected <= 5)
		fprintf(stderr, "bsteer: rejected policy decision for request %u: %s\n",
			r, why);
	reject_pending_ops(e, r);
	req_finish(e, r, -EIO);
}

/* Seal the slot as the decision asks, if the request holds it. */
static const char *apply_seal(struct bsteer_engine *e, __u32 r, __u32 slot)
{
	struct bsteer_slot_priv *p;

	if (slot == BSTEER_NO_SLOT)
		return NULL;
	if (!slot_mine(e, slot))
		return "seal of a slot out of range";
	p = sp(e, slot);
	if (p->state != BSTEER_SLOT_LEASED || p->owner != r)
		return "seal of a slot the request does not hold";
	p->dir = BSTEER_DIR_DRAIN;
	e->in->meta[slot].dir = BSTEER_DIR_DRAIN;
	return NULL;
}

/* ---- the executor ---- */

/* A finished request: only the rest of a frontend's short send goes on. */
static void execute_late(struct bsteer_engine *e, __u32 r, __u64 ud,
			 const struct bsteer_decision *d)
{
	const struct bsteer_dop *o = &d->ops[0];

	if (d->cookie == ud && d->nops == 1 && !d->nrelease &&
	    o->target >= e->ntargets &&
	    !check_decision(e, r, bsteer_ud_op(ud), d))
		submit_op(e, r, o->op, o->opcode, o->target, o->slot,
			  o->slot_off, o->len, o->offset, o->flags & ~OPF_LINK,
			  true);
	else
		reject_pending_ops(e, r);
	req_maybe_free(e, r);
}

/*
 * What a target may want to know of an op's siblings: several writes go
 * to several legs (a mirror), and large ones may run side by side.
 */
static __u32 write_hints(const struct bsteer_decision *d, const struct bsteer_dop *o)
{
	__u32 i, writes = 0, big = 0, h = 0;

	if (o->opcode != BSTEER_OP_WRITE)
		return 0;
	for (i = 0; i < d->nops; i++) {
		writes += d->ops[i].opcode == BSTEER_OP_WRITE;
		big += d->ops[i].opcode == BSTEER_OP_WRITE &&
		       d->ops[i].len > BSTEER_TIO_BIG;
	}
	if (writes > 1)
		h |= BSTEER_TIO_LEGS;
	if (big > 1 && o->len > BSTEER_TIO_BIG)
		h |= BSTEER_TIO_FANOUT;
	return h << 16;
}

/*
 * Carry out the decision that answers completion @ud. It is copied out of
 * the shared map first and only the copy is checked and used.
 */
void execute(struct bsteer_engine *e, __u32 r, __u64 ud,
	     const struct bsteer_decision *shared)
{
	__u32 k = r - e->req_base;
	struct bsteer_decision d;
	const char *why;
	__u32 i;

	e->st.executed++;
	bsteer_engine_reserve(e, BSTEER_DEC_OPS);
	memcpy(&d, shared, sizeof(d));
	if (e->req_state[k] != BSTEER_RQ_ACTIVE) {
		execute_late(e, r, ud, &d);
		return;
	}
	if (d.cookie != ud) {
		why = "decision changed while read";
		goto bad;
	}
	why = apply_seal(e, r, d.seal);
	if (!why)
		why = check_decision(e, r, bsteer_ud_op(ud), &d);
	/* The policy's own count lives in map memory it may write: ours. */
	if (!why && e->req_issued[k] + d.nops > BSTEER_OP_BUDGET) {
		bsteer_stat_add(e->in, BSTEER_ST_BUDGET, 1);
		why = "op budget of the request exceeded (an endless policy?)";
	}
	if (why)
		goto bad;
	for (i = 0; i < d.nops; i++) {
		const struct bsteer_dop *o = &d.ops[i];
		bool fe = o->target >= e->ntargets;
		__u32 flags = (o->flags & 0xffff) | write_hints(&d, o);

		if (submit_op(e, r, o->op, o->opcode, o->target, o->slot,
			      o->slot_off, o->len, o->offset, flags, fe)) {
			why = "submission queue unavailable";
			goto bad;
		}
		e->req_issued[k]++;
	}
	/*
	 * Completion first: the frontend may keep the data slot to send a
	 * reply from it, and then it, not the policy, lets it go.
	 */
	if (d.flags & BSTEER_DEC_DONE)
		req_finish(e, r, d.error);
	for (i = 0; i < d.nrelease; i++) {
		if (e->req_keep[k] && d.release[i] == e->req_slot[k])
			continue;
		bsteer_slot_release(e, d.release[i]);
	}
	/* Nothing out and not done: no completion will ever come back to it. */
	if (e->req_state[k] == BSTEER_RQ_ACTIVE && !e->submitted[k]) {
		why = "the decision leaves the request waiting for nothing";
		goto bad;
	}
	req_maybe_free(e, r);
	return;
bad:
	reject(e, r, why);
	req_maybe_free(e, r);
}
