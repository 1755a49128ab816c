/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Maps and core request bookkeeping shared by the core hooks and every
 * policy object. A policy object declares the same maps; the loader (or
 * bpftool's "map name X pinned P") makes it reuse the instance's maps, so a
 * policy never owns state of its own.
 *
 * Map sizes below are placeholders; the loader sets the real ones.
 */
#ifndef BSTEER_BPF_H
#define BSTEER_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "bsteer.h"

#ifndef EIO
#define EIO		5
#endif
#ifndef EAGAIN
#define EAGAIN		11
#endif
#ifndef EINTR
#define EINTR		4
#endif
#ifndef ENOSPC
#define ENOSPC		28
#endif
#ifndef E2BIG
#define E2BIG		7
#endif
#ifndef EBUSY
#define EBUSY		16
#endif
#ifndef EINVAL
#define EINVAL		22
#endif
#ifndef ENODEV
#define ENODEV		19
#endif
#ifndef EPIPE
#define EPIPE		32
#endif
#ifndef ETIME
#define ETIME		62
#endif
#ifndef EOPNOTSUPP
#define EOPNOTSUPP	95
#endif

#define BSTEER_MMAP_ARRAY(_name, _vtype, _n)			\
	struct {						\
		__uint(type, BPF_MAP_TYPE_ARRAY);		\
		__uint(map_flags, BPF_F_MMAPABLE);		\
		__uint(max_entries, _n);			\
		__type(key, __u32);				\
		__type(value, _vtype);				\
	} _name SEC(".maps")

BSTEER_MMAP_ARRAY(slot_meta, struct bsteer_slot, 1);
BSTEER_MMAP_ARRAY(slot_free, __u32, 1);
BSTEER_MMAP_ARRAY(reqs, struct bsteer_req, 1);
BSTEER_MMAP_ARRAY(decisions, struct bsteer_decision, 1);
BSTEER_MMAP_ARRAY(targets, struct bsteer_target, BSTEER_MAX_TARGETS);
BSTEER_MMAP_ARRAY(rings, struct bsteer_ring, BSTEER_MAX_RINGS);
BSTEER_MMAP_ARRAY(stats, __u64, BSTEER_ST__MAX);
BSTEER_MMAP_ARRAY(policy_stats, __u64, BSTEER_POLICY_IDS);
BSTEER_MMAP_ARRAY(batch, struct bsteer_cqe, BSTEER_MAX_RINGS * BSTEER_BATCH);
BSTEER_MMAP_ARRAY(cfg, struct bsteer_cfg, 1);

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} events SEC(".maps");

/* The completion the hook hands to the tail-called policy, per CPU. */
struct bsteer_scratch {
	__u64 user_data;
	__s32 res;
	__u32 ring;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bsteer_scratch);
} scratch SEC(".maps");

static __always_inline void stat_add(__u32 idx, __u64 v)
{
	__u64 *c = bpf_map_lookup_elem(&stats, &idx);

	if (c)
		__sync_fetch_and_add(c, v);
}

static __always_inline void stat_inc(__u32 idx)
{
	stat_add(idx, 1);
}

static __always_inline void emit_event(__u32 kind, __u64 ud, __u32 ring,
				       __u32 slot, __u8 opcode, __u8 dir,
				       __s32 error)
{
	struct bsteer_event *e;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return;
	e->ts_ns = bpf_ktime_get_ns();
	e->user_data = ud;
	e->kind = kind;
	e->ring = ring;
	e->slot = slot;
	e->opcode = opcode;
	e->dir = dir;
	e->pad0 = 0;
	e->error = error;
	e->pad1 = 0;
	bpf_ringbuf_submit(e, 0);
}

/* Return a slot to its ring's free stack. Owner-thread context only. */
static __always_inline void slot_free_push(struct bsteer_slot *m, __u32 slot)
{
	__u32 ring_id = m->ring;
	struct bsteer_ring *r;
	__u32 idx;
	__u32 *f;

	m->dir = 0;
	/* A frontend's own slot goes back to it, not to the free stack. */
	if (m->flags & BSTEER_SLOTF_OWNED) {
		m->state = BSTEER_SLOT_OWNED;
		return;
	}
	m->state = BSTEER_SLOT_FREE;
	r = bpf_map_lookup_elem(&rings, &ring_id);
	if (!r || r->free_top >= r->slot_count)
		return;
	idx = r->slot_base + r->free_top;
	f = bpf_map_lookup_elem(&slot_free, &idx);
	if (!f)
		return;
	*f = slot;
	r->free_top++;
	stat_inc(BSTEER_ST_SLOT_RELEASES);
}

/* An op on @slot completed: drop its hold; free the slot if it was the last. */
static __always_inline void slot_put(__u32 slot)
{
	struct bsteer_slot *m = bpf_map_lookup_elem(&slot_meta, &slot);

	if (!m || !m->inflight)
		return;
	if (__sync_sub_and_fetch(&m->inflight, 1) == 0 &&
	    m->state == BSTEER_SLOT_RELEASING)
		slot_free_push(m, slot);
}

/*
 * What a policy sees for one completion. The decision it writes goes to
 * @dec; the core stamps the cookie afterwards, so a half-written decision
 * is never mistaken for a finished one.
 */
struct bsteer_pctx {
	__u64 cookie;
	__s32 res;		/* final result: bytes moved, or -errno */
	__u32 req_idx;
	__u32 ring;
	__u8  op;		/* which op of the request completed */
	__u8  opcode;		/* enum bsteer_opcode */
	__u8  op_flags;		/* BSTEER_OPF_* */
	__u8  pad0;
	__u16 target;
	__u16 pad1;
	__u32 slot;
	__u32 slot_off;
	__u32 len;		/* bytes the op asked for */
	__u64 offset;		/* target offset of the completed op */
	struct bsteer_req *req;
	struct bsteer_decision *dec;
	struct bsteer_cfg *cfg;
};

enum {
	CORE_IGNORE = 0,	/* not a completion we can answer */
	CORE_DECIDED,		/* core wrote the whole decision */
	CORE_POLICY,		/* the policy must decide */
};

static __always_inline void dec_reset(struct bsteer_decision *d)
{
	d->cookie = 0;
	d->nops = 0;
	d->nrelease = 0;
	d->flags = 0;
	d->error = 0;
	d->seal = BSTEER_NO_SLOT;
}

/* The rest of a short transfer, as the decision: same op, next sequence. */
static __always_inline void core_resubmit_rest(struct bsteer_pctx *p,
					       struct bsteer_req_op *o, __u32 op,
					       __s32 res)
{
	struct bsteer_dop *d = &p->dec->ops[0];

	o->done += res;
	o->seq++;
	d->opcode = o->opcode;
	d->op = op;
	d->target = o->target;
	d->slot = o->slot;
	d->slot_off = o->slot_off + o->done;
	d->len = o->len - o->done;
	d->offset = o->offset == BSTEER_OFF_STREAM ?
		    BSTEER_OFF_STREAM : o->offset + o->done;
	d->flags = o->flags;
	d->slot_gen = 0;
	if (o->slot != BSTEER_NO_SLOT) {
		struct bsteer_slot *m;

		m = bpf_map_lookup_elem(&slot_meta, &o->slot);
		if (m)
			d->slot_gen = m->gen;
	}
	p->dec->nops = 1;
	stat_inc(BSTEER_ST_OPS_SHORT);
}

/* A policy op's end, in its target's counters. */
static __always_inline void core_count_target(__u32 t, __s32 res)
{
	struct bsteer_target *tg = bpf_map_lookup_elem(&targets, &t);

	if (!tg)
		return;
	__sync_fetch_and_add(&tg->ops, 1);
	if (res < 0) {
		__sync_fetch_and_add(&tg->errors, 1);
		tg->last_error = res;
	} else {
		__sync_fetch_and_add(&tg->bytes, res);
	}
}

/*
 * Core bookkeeping for one of our completions, identical in the hook and
 * in the fallback: short transfers are resubmitted without asking the
 * policy, a finished op releases its hold on the slot and the join count,
 * and only then is the policy asked.
 */
static __always_inline int core_begin(struct bsteer_pctx *p, __u64 ud,
				      __s32 res, __u32 ring)
{
	struct bsteer_req_op *o;
	struct bsteer_req *req;
	__u32 key, op;
	__u32 zero = 0;

	if (!bsteer_ud_ours(ud))
		return CORE_IGNORE;
	p->cookie = ud;
	p->ring = ring;
	p->req_idx = bsteer_ud_req(ud);
	op = bsteer_ud_op(ud);
	p->op = op;

	req = bpf_map_lookup_elem(&reqs, &p->req_idx);
	if (!req || req->state == BSTEER_RQ_FREE ||
	    (req->gen & BSTEER_GEN_MASK) != bsteer_ud_gen(ud) ||
	    req->ring != ring)
		return CORE_IGNORE;
	o = &req->ops[op & (BSTEER_REQ_OPS - 1)];
	if (o->state != BSTEER_OPS_INFLIGHT || o->seq != bsteer_ud_seq(ud))
		return CORE_IGNORE;

	key = bsteer_dec_index(p->req_idx, op);
	p->dec = bpf_map_lookup_elem(&decisions, &key);
	p->cfg = bpf_map_lookup_elem(&cfg, &zero);
	if (!p->dec || !p->cfg)
		return CORE_IGNORE;
	p->req = req;
	dec_reset(p->dec);
	stat_inc(BSTEER_ST_OPS_COMPLETED);

	if (o->slot != BSTEER_NO_SLOT)
		slot_put(o->slot);

	/* A short transfer: ask for the rest, same op, next sequence. */
	if (res > 0 && (req->state == BSTEER_RQ_ACTIVE ||
			(o->flags & BSTEER_OPF_FRONTEND)) &&
	    (o->opcode == BSTEER_OP_READ || o->opcode == BSTEER_OP_WRITE) &&
	    o->done + (__u32)res < o->len) {
		core_resubmit_rest(p, o, op, res);
		return CORE_DECIDED;
	}

	/* A WAIT that ran its course is a success. */
	if (o->opcode == BSTEER_OP_WAIT && res == -ETIME)
		res = 0;
	p->res = res < 0 ? res : (__s32)(o->done + res);
	/*
	 * A policy's READ that ends short (the target is smaller than asked)
	 * would leave stale bytes in the slot: it is an error, not data.
	 */
	if (!(o->flags & BSTEER_OPF_FRONTEND) && o->opcode == BSTEER_OP_READ &&
	    p->res >= 0 && (__u32)p->res < o->len)
		p->res = -EIO;
	p->opcode = o->opcode;
	p->op_flags = o->flags;
	p->target = o->target;
	p->slot = o->slot;
	p->slot_off = o->slot_off;
	p->len = o->len;
	p->offset = o->offset;
	o->state = BSTEER_OPS_FREE;
	if (req->inflight)
		req->inflight--;
	/* What the frontend received is the request's payload. */
	if ((o->flags & BSTEER_OPF_FRONTEND) && o->opcode == BSTEER_OP_READ &&
	    p->res >= 0) {
		/* A peer that hung up mid-payload sent no request at all. */
		if ((req->flags & BSTEER_REQF_EXACT) && (__u32)p->res < o->len)
			p->res = -EPIPE;
		else
			req->len = p->res;
	}

	if (!(o->flags & BSTEER_OPF_FRONTEND) && o->opcode != BSTEER_OP_WAIT &&
	    o->target < BSTEER_MAX_TARGETS)
		core_count_target(o->target, p->res);
	if (res < 0)
		stat_inc(BSTEER_ST_OPS_ERRORS);

	/* A late op of a finished request: nothing left to decide. */
	if (req->state != BSTEER_RQ_ACTIVE)
		return CORE_DECIDED;
	return CORE_POLICY;
}

/* Publish the decision: the cookie goes last. */
static __always_inline void core_finish(struct bsteer_pctx *p, __u32 stat,
					__u32 policy_id)
{
	__u64 *c;

	if (!p->dec)
		return;
	p->dec->cookie = p->cookie;
	stat_inc(stat);
	policy_id &= BSTEER_POLICY_IDS - 1;
	c = bpf_map_lookup_elem(&policy_stats, &policy_id);
	if (c)
		__sync_fetch_and_add(c, 1);
}

/* The fallback's view of the batch of one ring. */
struct bsteer_fb {
	__u32 ring;
	__u32 decided;
};

/* Only the ring's owner may run its fallback. */
static __always_inline int fb_owner(struct bsteer_fb *fb)
{
	__u32 ring = fb->ring;
	struct bsteer_ring *r = bpf_map_lookup_elem(&rings, &ring);

	return r && r->owner_tid == (__u32)bpf_get_current_pid_tgid();
}

static __always_inline struct bsteer_cqe *fb_cqe(struct bsteer_fb *fb, __u32 i)
{
	__u32 key = fb->ring * BSTEER_BATCH + i;

	if (fb->ring >= BSTEER_MAX_RINGS || i >= BSTEER_BATCH)
		return NULL;
	return bpf_map_lookup_elem(&batch, &key);
}

/*
 * The fallback host of a decide function: NAME_fallback() runs @decide
 * over the batch of completions the hook left unanswered (the engine's
 * BPF_PROG_RUN of a SEC("syscall") program), with the same core
 * bookkeeping as the hook. Policies (BSTEER_POLICY) and the core's
 * no-policy fallback are both built on it.
 */
#define BSTEER_FALLBACK_HOST(name, decide, id)				\
/*									\
 * One completion of the batch: a global function, so the verifier	\
 * checks the policy once, as it does in the hook, and not again for	\
 * every turn of the loop below. Returns 1 if decided, 0 if not ours,	\
 * -1 past the batch.							\
 */									\
__noinline int name##_one(__u32 ring, __u32 i)				\
{									\
	struct bsteer_fb fb = { .ring = ring };				\
	struct bsteer_pctx p = {};					\
	struct bsteer_cqe *c = fb_cqe(&fb, i);				\
	int rc;								\
									\
	if (!c)								\
		return -1;						\
	rc = core_begin(&p, c->user_data, c->res, ring);		\
	if (rc == CORE_IGNORE)						\
		return 0;						\
	if (rc == CORE_POLICY)						\
		decide(&p);						\
	core_finish(&p, BSTEER_ST_DEC_FALLBACK, id);			\
	return 1;							\
}									\
									\
static __always_inline int						\
name##_fallback(struct bsteer_fallback_args *args)			\
{									\
	struct bsteer_fb fb = { .ring = args->ring };			\
	__u32 n = args->count, i;					\
	int rc;								\
									\
	if (!fb_owner(&fb))						\
		return 0;						\
	if (n > BSTEER_BATCH)						\
		n = BSTEER_BATCH;					\
	for (i = 0; i < n; i++) {					\
		rc = name##_one(fb.ring, i);				\
		if (rc < 0)						\
			break;						\
		fb.decided += rc;					\
	}								\
	args->decided = fb.decided;					\
	return 0;							\
}

#endif /* BSTEER_BPF_H */
