// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * mirror: writes and flushes go to every healthy leg from one sealed slot;
 * a read goes to one healthy leg and moves to another one on error. A leg
 * that fails is taken out of service; the request succeeds while at least
 * one leg took the write.
 *
 * Which leg serves a read: cfg word 0, MIRROR_READ_* (0 = this object's
 * default). The same source builds three objects that differ only in that
 * default: mirror (primary), mirror_rr (round-robin) and mirror_lif (least
 * in flight). All keep the same layout, so they swap freely under load.
 *
 * Rebuilding a leg (`bsteer resync`): the leg is flagged BSTEER_TGT_RESYNC.
 * It takes every write, serves no read, and BSTEER_REQ_RESYNC requests copy
 * the export onto it chunk by chunk from a healthy leg. So that a copy never
 * puts back older bytes than a client wrote, every write-like request
 * counts itself in "mirror_sync" for each 64 KiB chunk it covers: a
 * generation bumped when it starts and an in-flight count. A copy starts
 * only on chunks with no write in flight and fails with -EAGAIN (to be
 * copied again) if any of their generations moved before it finished.
 *
 * Request scratch: pstate[0] is the mask of legs that completed the op,
 * plus MIRROR_TRACKED for a write counted in mirror_sync; a RESYNC counts
 * its waits in pstate[1], then keeps the sum of its chunks' generations.
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

#define MIRROR_TRACKED		(1ull << 63)
#define SYNC_SHIFT		16		/* 64 KiB chunks */
#define SYNC_ENTRIES		(1u << 16)	/* aliased modulo: conservative */

struct mirror_sync_chunk {
	__u32 gen;		/* bumped by each write that starts */
	__u32 inflight;		/* writes started, not finished */
};

/* Write tracking for resync, shared by every mirror object (pinned). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SYNC_ENTRIES);
	__type(key, __u32);
	__type(value, struct mirror_sync_chunk);
} mirror_sync SEC(".maps");

enum { SYNC_ENTER, SYNC_LEAVE, SYNC_SUM };

struct sync_walk {
	__u64 first;		/* chunk numbers */
	__u64 last;
	__u64 sum;		/* SYNC_SUM: generations added up */
	__u32 busy;		/* SYNC_SUM: chunks with writes in flight */
	__u32 how;
};

static long sync_one(__u32 i, void *data)
{
	struct sync_walk *w = data;
	struct mirror_sync_chunk *c;
	__u32 key;

	if (w->first + i > w->last)
		return 1;
	key = (w->first + i) & (SYNC_ENTRIES - 1);
	c = bpf_map_lookup_elem(&mirror_sync, &key);
	if (!c)
		return 1;
	if (w->how == SYNC_ENTER) {
		__sync_fetch_and_add(&c->gen, 1);
		__sync_fetch_and_add(&c->inflight, 1);
	} else if (w->how == SYNC_LEAVE) {
		__sync_fetch_and_sub(&c->inflight, 1);
	} else {
		w->sum += c->gen;
		w->busy += c->inflight != 0;
	}
	return 0;
}

/* Walk the chunks of the request's range. */
static __always_inline struct sync_walk mirror_sync_walk(struct bsteer_req *rq,
							 __u32 how)
{
	struct sync_walk w = { .how = how };

	if (!rq->len)
		return w;
	w.first = rq->offset >> SYNC_SHIFT;
	w.last = (rq->offset + rq->len - 1) >> SYNC_SHIFT;
	/* Past SYNC_ENTRIES chunks every entry is already counted once. */
	bpf_loop(SYNC_ENTRIES, sync_one, &w, 0);
	return w;
}

/* A leg that serves reads: in service and not being rebuilt. */
static __always_inline int mirror_readable(__u32 t)
{
	struct bsteer_target *tg = bsteer_target(t);

	return tg && !(tg->flags & (BSTEER_TGT_FAILED | BSTEER_TGT_RESYNC));
}

/* The round-robin cursor, shared by every mirror object of the instance. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} mirror_rr SEC(".maps");

/* @opcode to every healthy leg (only those being rebuilt, if @rebuilt). */
static __always_inline int mirror_fanout_to(struct bsteer_pctx *p, __u8 opcode,
					    __u32 slot, __u32 len, bool rebuilt)
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
		if (!bsteer_target_ok(t) || (rebuilt && mirror_readable(t)))
			continue;
		if (bsteer_emit(p, opcode, t, slot, 0, len, off))
			break;
		emitted++;
	}
	return emitted;
}

static __always_inline int mirror_fanout(struct bsteer_pctx *p, __u8 opcode,
					 __u32 slot, __u32 len)
{
	return mirror_fanout_to(p, opcode, slot, len, false);
}

/*
 * The target of the first readable leg from leg @from on, round to the
 * legs before it; -1 if none. A read that failed on a leg tries the
 * others, those before it too (the leg is failed by then: it is not
 * picked again), so a leg removed under a read (bsteer leg remove) costs
 * the read nothing while another leg serves.
 */
static __always_inline int mirror_pick(struct bsteer_pctx *p, __u32 from)
{
	__u32 n = bsteer_nlegs(p);
	__u32 i, k;

	if (n > MIRROR_MAX_LEGS)
		n = MIRROR_MAX_LEGS;
	if (from >= n)
		from = 0;
	for (i = 0; i < MIRROR_MAX_LEGS; i++) {
		if (i >= n)
			break;
		k = from + i;
		if (k >= n)
			k -= n;
		if (mirror_readable(bsteer_leg(p, k)))
			return bsteer_leg(p, k);
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
		if (!tg || (tg->flags & (BSTEER_TGT_FAILED | BSTEER_TGT_RESYNC)))
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

#define RESYNC_WAITS	12	/* 50 us doubling: about 0.2 s in all */

/*
 * A copy starts once no write is out on its range (waiting a little for
 * those that are; then the caller tries again later), and notes the range's
 * generations to compare at the end. pstate[1] counts the waits until then.
 */
static __always_inline void mirror_resync_start(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;
	struct sync_walk w = mirror_sync_walk(rq, SYNC_SUM);
	__u64 waits = rq->pstate[1];
	int leg;

	if (w.busy) {
		rq->pstate[1] = waits + 1;
		if (waits >= RESYNC_WAITS ||
		    bsteer_wait(p, 50u << (waits < 12 ? waits : 12)))
			bsteer_note_error(p, -EAGAIN);
		return;
	}
	rq->pstate[1] = w.sum;
	leg = mirror_pick(p, 0);
	if (leg < 0 || bsteer_emit(p, BSTEER_OP_READ, leg, rq->slot, 0,
				   rq->len, rq->offset))
		bsteer_note_error(p, -EIO);
}

static __always_inline void mirror_arrival(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;
	int leg;

	if (rq->type == BSTEER_REQ_WRITE || rq->type == BSTEER_REQ_TRIM ||
	    rq->type == BSTEER_REQ_WRITE_ZEROES) {
		mirror_sync_walk(rq, SYNC_ENTER);
		rq->pstate[0] |= MIRROR_TRACKED;
	}
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
		if (leg < 0 || bsteer_emit_reply(p, leg, rq->slot, rq->len,
						 rq->offset))
			bsteer_note_error(p, -EIO);
		break;
	case BSTEER_REQ_RESYNC:
		mirror_resync_start(p);
		break;
	default:
		bsteer_note_error(p, -EOPNOTSUPP);
	}
}

static __always_inline void mirror_op_done(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;
	int leg;

	if (p->opcode == BSTEER_OP_WAIT) {	/* a RESYNC waited: look again */
		if (!rq->error)
			mirror_resync_start(p);
		return;
	}
	if (p->res >= 0) {
		rq->pstate[0] |= 1ull << (p->target & 63);
		/* A RESYNC's read is in: write it to the legs being rebuilt. */
		if (rq->type == BSTEER_REQ_RESYNC && p->opcode == BSTEER_OP_READ) {
			bsteer_seal(p, rq->slot);
			if (!mirror_fanout_to(p, BSTEER_OP_WRITE, rq->slot,
					      rq->len, true))
				bsteer_note_error(p, -ENODEV);
		}
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
	if (rq->type != BSTEER_REQ_READ && rq->type != BSTEER_REQ_RESYNC &&
	    (rq->pstate[0] & ~MIRROR_TRACKED))
		rq->error = 0;
	/* A copy that a client write overlapped is stale: copy it again. */
	if (rq->type == BSTEER_REQ_RESYNC && !rq->error &&
	    mirror_sync_walk(rq, SYNC_SUM).sum != rq->pstate[1])
		rq->error = -EAGAIN;
	/* FUA: make it stable on every leg that took it, then answer. */
	if (bsteer_fua_due(p) &&
	    mirror_fanout(p, BSTEER_OP_FDATASYNC, BSTEER_NO_SLOT, 0))
		return;
	if (bsteer_join(p) && (rq->pstate[0] & MIRROR_TRACKED)) {
		rq->pstate[0] &= ~MIRROR_TRACKED;
		mirror_sync_walk(rq, SYNC_LEAVE);
	}
}

BSTEER_POLICY(MIRROR_NAME, MIRROR_ID)
