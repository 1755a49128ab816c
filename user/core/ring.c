// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The engine's ring: one io_uring driven by one thread. It is set up with
 * its share of the slots registered as fixed buffers, reaps completions,
 * hands each to whom it belongs by its tag (an op's decision to the
 * executor, a module's own SQE to that module), and runs the policy's
 * syscall twin over what the hook did not answer.
 *
 * All request, slot and decision state is BPF map memory mapped here. The
 * completion hooks for this ring run inside this thread's io_uring_enter()
 * (SINGLE_ISSUER|DEFER_TASKRUN), so nothing here races with them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "core/engine.h"
#include "core.skel.h"

void bsteer_stat_add(struct bsteer_instance *in, enum bsteer_stat s, __u64 v)
{
	__atomic_fetch_add(&in->stats[s], v, __ATOMIC_RELAXED);
}

/* ---- accessors ---- */

struct bsteer_instance *bsteer_engine_instance(const struct bsteer_engine *e)
{
	return e->in;
}

const struct bsteer_engine_opts *bsteer_engine_opts(const struct bsteer_engine *e)
{
	return &e->opts;
}

__u32 bsteer_engine_ring(const struct bsteer_engine *e)
{
	return e->id;
}

__u32 bsteer_engine_slots(const struct bsteer_engine *e)
{
	return e->slot_count;
}

__u32 bsteer_engine_reqs(const struct bsteer_engine *e)
{
	return e->req_count;
}

__u32 bsteer_engine_req_index(const struct bsteer_engine *e, __u32 req)
{
	return req - e->req_base;
}

__u32 bsteer_engine_nops(const struct bsteer_engine *e)
{
	return e->req_count * BSTEER_REQ_OPS;
}

static bool own_req(const struct bsteer_engine *e, __u64 ud, __u32 *r)
{
	*r = bsteer_ud_req(ud);
	return bsteer_ud_ours(ud) && *r >= e->req_base &&
	       *r < e->req_base + e->req_count;
}

int bsteer_engine_op_of(const struct bsteer_engine *e, __u64 ud)
{
	__u32 r;

	if (!own_req(e, ud, &r))
		return -1;
	return (r - e->req_base) * BSTEER_REQ_OPS + bsteer_ud_op(ud);
}

__u64 bsteer_engine_now(const struct bsteer_engine *e)
{
	return e->now_ns;
}

__u64 bsteer_engine_busy(const struct bsteer_engine *e)
{
	return e->inflight_sqes;
}

/* ---- SQEs ---- */

/*
 * Room for a whole decision before it is read: submitting mid-decision
 * would run completion hooks that rewrite the maps under the executor.
 */
void bsteer_engine_reserve(struct bsteer_engine *e, unsigned n)
{
	if (io_uring_sq_space_left(&e->ring) < n)
		io_uring_submit(&e->ring);
}

struct io_uring_sqe *bsteer_engine_sqe(struct bsteer_engine *e)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);

	if (!sqe) {
		io_uring_submit(&e->ring);
		sqe = io_uring_get_sqe(&e->ring);
	}
	return sqe;
}

/* ---- owners and targets ---- */

int bsteer_engine_owner(struct bsteer_engine *e, const struct bsteer_owner_ops *ops,
			void *arg)
{
	if (e->nowners == BSTEER_OWNERS)
		return -ENOSPC;
	e->owner[e->nowners].ops = ops;
	e->owner[e->nowners].arg = arg;
	return e->nowners++;
}

int bsteer_engine_owner_parser(struct bsteer_engine *e, int owner, __u32 parser)
{
	if (parser >= BSTEER_FRONTEND_IDS || owner < 0 || (__u32)owner >= e->nowners)
		return -EINVAL;
	e->parser_owner[parser] = owner;
	return 0;
}

int bsteer_engine_attach(struct bsteer_engine *e, __u32 t,
			 const struct bsteer_target_ops *ops,
			 const struct bsteer_leg *leg)
{
	if (t >= e->ntargets)
		return -EINVAL;
	e->tgt[t].ops = ops;
	e->tgt[t].priv = NULL;
	return ops && ops->attach ? ops->attach(e, t, leg) : 0;
}

void bsteer_target_use(struct bsteer_engine *e, __u32 t,
		       const struct bsteer_target_ops *ops)
{
	if (t < BSTEER_MAX_TARGETS)
		e->tgt[t].ops = ops;
}

void *bsteer_target_priv(struct bsteer_engine *e, __u32 t)
{
	return t < BSTEER_MAX_TARGETS ? e->tgt[t].priv : NULL;
}

void bsteer_target_set_priv(struct bsteer_engine *e, __u32 t, void *priv)
{
	if (t < BSTEER_MAX_TARGETS)
		e->tgt[t].priv = priv;
}

const struct bsteer_target_ops *bsteer_target_ops_of(struct bsteer_engine *e,
						     __u32 t)
{
	return t < e->ntargets ? tgt_ops(e, t) : NULL;
}

static void targets_detach(struct bsteer_engine *e)
{
	__u32 t;

	for (t = 0; t < e->ntargets; t++) {
		if (e->tgt[t].ops && e->tgt[t].ops->detach)
			e->tgt[t].ops->detach(e, t);
		e->tgt[t].ops = NULL;
		e->tgt[t].priv = NULL;
	}
}

/* ---- reaping ---- */

static const struct bsteer_decision *decision_for(struct bsteer_engine *e,
						  __u64 ud, __u32 r)
{
	const struct bsteer_decision *d;

	d = &e->in->decs[bsteer_dec_index(r, bsteer_ud_op(ud))];
	return __atomic_load_n(&d->cookie, __ATOMIC_ACQUIRE) == ud ? d : NULL;
}

/* Completion @ud is answered (or given up on): its op is no longer out. */
static void answered(struct bsteer_engine *e, __u32 r, __u64 ud)
{
	e->submitted[r - e->req_base] &= ~(1u << bsteer_ud_op(ud));
}

/*
 * After a completion was dealt with: if it was a frontend op's and the op
 * did not go out again as the frontend's (the rest of a short transfer),
 * tell its owner it is over. A policy may reuse the op index at once.
 */
static void frontend_check(struct bsteer_engine *e, __u32 r, __u64 ud,
			   bool was_frontend, int res)
{
	__u32 op = bsteer_ud_op(ud);
	struct bsteer_op_priv *o = opp(e, r, op);
	const struct bsteer_owner *ow;

	if (!was_frontend)
		return;
	if ((e->submitted[r - e->req_base] & (1u << op)) && o->frontend)
		return;
	ow = req_owner(e, r);
	if (ow->ops && ow->ops->op_done)
		ow->ops->op_done(ow->arg, r, op, res);
}

/*
 * Neither the hook nor the twin answered a current completion (a broken or
 * hostile policy). The request cannot go on: fail it, and if the core never
 * booked the op's completion, book it here so the slot and the request
 * record still come back.
 */
static void settle_missing(struct bsteer_engine *e, __u32 r, __u64 ud)
{
	struct bsteer_req *rq = &e->in->reqs[r];
	struct bsteer_req_op *o = &rq->ops[bsteer_ud_op(ud)];
	__u32 slot = opp(e, r, bsteer_ud_op(ud))->slot;
	const struct bsteer_decision *d;

	d = &e->in->decs[bsteer_dec_index(r, bsteer_ud_op(ud))];
	if (bsteer_ud_req(d->cookie) == r &&
	    bsteer_ud_op(d->cookie) == bsteer_ud_op(ud))
		bsteer_stat_add(e->in, BSTEER_ST_DEC_STALE, 1);
	else
		bsteer_stat_add(e->in, BSTEER_ST_DEC_MISSING, 1);
	e->st.missing++;
	if (e->opts.verbose || e->st.missing <= 5)
		fprintf(stderr, "bsteer: no valid decision for request %u op %u; failing it\n",
			r, bsteer_ud_op(ud));
	if (o->state == BSTEER_OPS_INFLIGHT && o->seq == bsteer_ud_seq(ud)) {
		o->state = BSTEER_OPS_FREE;
		if (rq->inflight)
			rq->inflight--;
		if (slot_mine(e, slot)) {
			struct bsteer_slot *m = &e->in->meta[slot];

			if (m->inflight &&
			    !__atomic_sub_fetch(&m->inflight, 1, __ATOMIC_ACQ_REL) &&
			    m->state == BSTEER_SLOT_RELEASING)
				slot_push_free(e, slot);
		}
	}
	reject_pending_ops(e, r);
	req_finish(e, r, -EIO);
	req_maybe_free(e, r);
}

/*
 * The active policy's syscall twin: its id sits in the pinned "policy_sys"
 * array, which a swap (ours or bpftool's) replaces. The fd is cached per id.
 * Without a twin, the core's own fallback keeps the books.
 */
static int fallback_fd(struct bsteer_engine *e)
{
	__u32 zero = 0, id = 0;

	if (bpf_map_lookup_elem(e->in->map_fd[BSTEER_MAP_POLICY_SYS], &zero, &id))
		id = 0;
	if (id && id == e->twin_id)
		return e->twin_fd;
	if (e->twin_fd >= 0)
		close(e->twin_fd);
	e->twin_fd = id ? bpf_prog_get_fd_by_id(id) : -1;
	e->twin_id = e->twin_fd >= 0 ? id : 0;
	if (e->twin_fd >= 0)
		return e->twin_fd;
	return bpf_program__fd(e->in->skel->progs.bsteer_fallback);
}

/*
 * Completions the hook did not answer go to the policy's syscall twin in
 * one BPF_PROG_RUN. Whatever is still unanswered after that is stale.
 */
static int run_fallback(struct bsteer_engine *e)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts);
	struct bsteer_fallback_args args = { .ring = e->id };
	struct bsteer_cqe *b = &e->in->batch[e->id * BSTEER_BATCH];
	struct bsteer_cqe pending[BSTEER_BATCH];
	__u32 i, n = e->npending, r;
	int err;

	if (!n)
		return 0;
	memcpy(pending, e->pending, n * sizeof(*b));
	memcpy(b, pending, n * sizeof(*b));
	e->npending = 0;
	args.count = n;
	opts.ctx_in = &args;
	opts.ctx_size_in = sizeof(args);
	err = bpf_prog_test_run_opts(fallback_fd(e), &opts);
	bsteer_stat_add(e->in, BSTEER_ST_FALLBACK_RUNS, 1);
	if (err)
		fprintf(stderr, "bsteer: fallback run failed: %s\n", strerror(errno));
	for (i = 0; i < n; i++) {
		__u64 ud = pending[i].user_data;
		const struct bsteer_decision *d;
		bool fe;

		own_req(e, ud, &r);
		fe = opp(e, r, bsteer_ud_op(ud))->frontend;
		answered(e, r, ud);
		d = decision_for(e, ud, r);
		if (d) {
			e->st.fallback++;
			execute(e, r, ud, d);
		} else if ((e->in->reqs[r].gen & BSTEER_GEN_MASK) !=
			   bsteer_ud_gen(ud)) {
			/* A completion of a request long gone. */
			bsteer_stat_add(e->in, BSTEER_ST_DEC_STALE, 1);
			req_maybe_free(e, r);
			continue;
		} else {
			settle_missing(e, r, ud);
		}
		frontend_check(e, r, ud, fe, pending[i].res);
	}
	return 0;
}

/* One target op's latency, in its log2 bucket of microseconds. */
static void count_latency(struct bsteer_target *t, __u64 ns)
{
	__u64 us = ns / 1000;
	__u32 b = us <= 1 ? 0 : 64 - __builtin_clzll(us - 1);

	if (b >= BSTEER_LAT_BUCKETS)
		b = BSTEER_LAT_BUCKETS - 1;
	__atomic_fetch_add(&t->lat[b], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&t->lat_sum_ns, ns, __ATOMIC_RELAXED);
}

/* The kernel is done with an op's buffer, whatever the policy says. */
static void op_reaped(struct bsteer_engine *e, __u32 r, __u64 ud, int res)
{
	struct bsteer_op_priv *o = opp(e, r, bsteer_ud_op(ud));
	__u32 slot = o->slot;

	e->inflight_sqes--;
	if (target_op(e, o)) {
		__atomic_fetch_sub(&e->in->targets[o->target].inflight, 1,
				   __ATOMIC_RELAXED);
		count_latency(&e->in->targets[o->target], bsteer_now_ns() - o->t0);
	}
	o->res = res;
	if (o->piped && slot_mine(e, slot)) {
		struct bsteer_slot_priv *p = sp(e, slot);

		o->piped = 0;
		if (p->piping)
			p->piping--;
		if (res > 0)
			p->pipe_fill += res;
		else if (res < 0)
			pipe_drain(p);
	}
	if (slot_mine(e, slot) && sp(e, slot)->inflight &&
	    !--sp(e, slot)->inflight && sp(e, slot)->state == BSTEER_SLOT_RELEASING) {
		/* The core put it back (on the free stack, or to its owner). */
		sp(e, slot)->state = sp(e, slot)->owned ? BSTEER_SLOT_OWNED :
							  BSTEER_SLOT_FREE;
		slot_returned(e, slot);
	}
}

/* A completion that is not an op's: whose own SQE was it? */
static void module_cqe(struct bsteer_engine *e, const struct io_uring_cqe *cqe)
{
	__u64 ud = cqe->user_data;
	__u32 id = bsteer_ud_id(ud);
	const struct bsteer_owner *ow = NULL;
	int k;

	switch (bsteer_ud_tag(ud)) {
	case BSTEER_UD_TARGET:
		if (id < e->ntargets && tgt_ops(e, id)->cqe)
			tgt_ops(e, id)->cqe(e, id, cqe);
		return;
	case BSTEER_UD_PARSE:
		k = e->parser_owner[bsteer_parse_ud_parser(ud) % BSTEER_FRONTEND_IDS];
		ow = k >= 0 ? &e->owner[k] : NULL;
		break;
	case BSTEER_UD_OWNER:
		ow = id < e->nowners ? &e->owner[id] : NULL;
		break;
	default:		/* the engine's own cancels, or nobody's */
		return;
	}
	if (ow && ow->ops && ow->ops->cqe)
		ow->ops->cqe(ow->arg, cqe);
}

static void reap_one(struct bsteer_engine *e, const struct io_uring_cqe *cqe)
{
	const struct bsteer_decision *d;
	__u64 ud = cqe->user_data;
	__u32 r;

	if (!own_req(e, ud, &r)) {
		if (!bsteer_ud_ours(ud))
			module_cqe(e, cqe);
		return;
	}
	op_reaped(e, r, ud, cqe->res);
	d = decision_for(e, ud, r);
	if (d) {
		bool fe = opp(e, r, bsteer_ud_op(ud))->frontend;

		answered(e, r, ud);
		execute(e, r, ud, d);
		frontend_check(e, r, ud, fe, cqe->res);
		return;
	}
	if (e->npending == BSTEER_BATCH)
		run_fallback(e);
	e->pending[e->npending].user_data = ud;
	e->pending[e->npending].res = cqe->res;
	e->pending[e->npending].flags = cqe->flags;
	e->npending++;
}

/*
 * A target the policy marked failed (in any worker) lets go of its other
 * end once, in every worker; a rebuilt one (the flag cleared) may again.
 */
static void target_failed(struct bsteer_engine *e, __u32 t)
{
	bool failed = __atomic_load_n(&e->in->targets[t].flags, __ATOMIC_ACQUIRE) &
		      BSTEER_TGT_FAILED;
	struct bsteer_tgt *g = &e->tgt[t];

	if (failed && !g->failed && g->ops && g->ops->fail)
		g->ops->fail(e, t);
	g->failed = failed;
}

/* Before a submit: the targets write what they queued; what hangs fails. */
static bool targets_kick(struct bsteer_engine *e)
{
	bool waiting = false;
	__u32 t;

	for (t = 0; t < e->ntargets; t++) {
		const struct bsteer_target_ops *ops = e->tgt[t].ops;

		target_failed(e, t);
		if (!ops)
			continue;
		if (ops->kick)
			ops->kick(e, t);
		if (ops->waiting && ops->waiting(e, t))
			waiting = true;
	}
	return waiting;
}

int bsteer_engine_run(struct bsteer_engine *e, unsigned wait_nr)
{
	return bsteer_engine_run_timeout(e, wait_nr, -1);
}

int bsteer_engine_run_timeout(struct bsteer_engine *e, unsigned wait_nr,
			      int timeout_ms)
{
	struct io_uring_cqe *cqes[BSTEER_BATCH], *cqe;
	unsigned n, i;
	int ret;

	/* A hung remote target is noticed only if we wake up now and then. */
	if (targets_kick(e) && timeout_ms < 0)
		timeout_ms = 1000;
	if (timeout_ms >= 0 && wait_nr) {
		struct __kernel_timespec ts = {
			.tv_sec = timeout_ms / 1000,
			.tv_nsec = (timeout_ms % 1000) * 1000000ll,
		};

		/* The CQE it may hand back stays in the ring for the peek. */
		ret = io_uring_submit_and_wait_timeout(&e->ring, &cqe, wait_nr,
						       &ts, NULL);
	} else {
		ret = io_uring_submit_and_wait(&e->ring, wait_nr);
	}
	e->now_ns = bsteer_now_ns();
	if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY &&
	    ret != -ETIME)
		return ret;
	do {
		n = io_uring_peek_batch_cqe(&e->ring, cqes, BSTEER_BATCH);
		for (i = 0; i < n; i++)
			reap_one(e, cqes[i]);
		io_uring_cq_advance(&e->ring, n);
	} while (n);
	run_fallback(e);
	return ret == -EINTR ? -EINTR : 0;
}

/* ---- setup ---- */

static int alloc_books(struct bsteer_engine *e)
{
	__u32 i;

	e->req_stack = calloc(e->req_count, sizeof(*e->req_stack));
	e->submitted = calloc(e->req_count, 1);
	e->req_state = calloc(e->req_count, 1);
	e->req_keep = calloc(e->req_count, 1);
	e->req_owner = calloc(e->req_count, 1);
	e->req_slot = calloc(e->req_count, sizeof(*e->req_slot));
	e->req_issued = calloc(e->req_count, sizeof(*e->req_issued));
	e->slot = calloc(e->slot_count, sizeof(*e->slot));
	e->op = calloc((size_t)e->req_count * BSTEER_REQ_OPS, sizeof(*e->op));
	if (!e->req_stack || !e->submitted || !e->req_state || !e->req_keep ||
	    !e->req_owner || !e->req_slot || !e->req_issued || !e->slot || !e->op)
		return -ENOMEM;
	for (i = 0; i < e->slot_count; i++)
		e->slot[i].pipe[0] = e->slot[i].pipe[1] = -1;
	for (i = 0; i < e->req_count; i++)
		e->req_stack[i] = e->req_base + e->req_count - 1 - i;
	for (i = 0; i < e->req_count * BSTEER_REQ_OPS; i++)
		e->op[i].slot = BSTEER_NO_SLOT;
	e->req_top = e->req_count;
	return 0;
}

/* The ring's partition of the slots, all free, in the shared maps. */
static void partition(struct bsteer_engine *e)
{
	struct bsteer_instance *in = e->in;
	struct bsteer_ring *r = &in->rings[e->id];
	__u32 i;

	r->slot_base = e->slot_base;
	r->slot_count = e->slot_count;
	r->req_base = e->req_base;
	r->req_count = e->req_count;
	r->free_top = 0;
	for (i = 0; i < e->slot_count; i++) {
		__u32 s = e->slot_base + e->slot_count - 1 - i;

		in->meta[s].ring = e->id;
		in->meta[s].state = BSTEER_SLOT_FREE;
		in->freelist[e->slot_base + r->free_top++] = s;
	}
}

/* Create the ring, telling the create hook beforehand that it is ours. */
static int ring_create(struct bsteer_engine *e)
{
	struct bsteer_instance *in = e->in;
	struct io_uring_params p = {};
	__u32 tid = syscall(SYS_gettid);
	int err;

	err = bpf_map_update_elem(in->map_fd[BSTEER_MAP_RING_CLAIM], &tid, &e->id,
				  BPF_ANY);
	if (err) {
		err = -errno;
		bsteer_set_err("cannot claim ring %u: %s", e->id, strerror(-err));
		return err;
	}
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		  IORING_SETUP_CQSIZE | (e->opts.sqe128 ? IORING_SETUP_SQE128 : 0);
	p.cq_entries = BSTEER_CQ_ENTRIES;
	err = io_uring_queue_init_params(BSTEER_SQ_ENTRIES, &e->ring, &p);
	bpf_map_delete_elem(in->map_fd[BSTEER_MAP_RING_CLAIM], &tid);
	if (err) {
		bsteer_set_err("cannot create an io_uring with SINGLE_ISSUER|DEFER_TASKRUN: %s",
			       strerror(-err));
		return err;
	}
	e->ring_ok = true;
	if (!in->rings[e->id].ctx) {
		bsteer_set_err("the io_uring_create hook did not see ring %u", e->id);
		return -ENOENT;
	}
	in->rings[e->id].active = 1;
	return 0;
}

/* Slot i of the pool is fixed buffer i of this ring. */
static int register_slots(struct bsteer_engine *e)
{
	struct bsteer_instance *in = e->in;
	struct iovec *iov = calloc(in->nslots, sizeof(*iov));
	__u32 i;
	int err;

	if (!iov)
		return -ENOMEM;
	for (i = 0; i < in->nslots; i++) {
		iov[i].iov_base = bsteer_slot_data(in, i) - BSTEER_SLOT_HEADROOM;
		iov[i].iov_len = BSTEER_SLOT_HEADROOM + in->slot_size;
	}
	err = io_uring_register_buffers(&e->ring, iov, in->nslots);
	free(iov);
	if (err)
		bsteer_set_err("cannot register %u slots of %u bytes as fixed buffers: %s",
			       in->nslots, in->slot_size, strerror(-err));
	return err;
}

struct bsteer_engine *bsteer_engine_new(struct bsteer_instance *in, __u32 id,
					const struct bsteer_engine_opts *o,
					int *errp)
{
	struct bsteer_engine *e = calloc(1, sizeof(*e));
	int err;

	if (!e) {
		*errp = -ENOMEM;
		return NULL;
	}
	e->in = in;
	e->id = id;
	e->twin_fd = -1;
	e->now_ns = bsteer_now_ns();
	if (o)
		e->opts = *o;
	memset(e->parser_owner, -1, sizeof(e->parser_owner));
	e->slot_count = in->nslots / in->nrings;
	e->slot_base = id * e->slot_count;
	e->req_count = in->nreqs / in->nrings;
	e->req_base = id * e->req_count;
	err = alloc_books(e);
	if (!err) {
		partition(e);
		err = ring_create(e);
	}
	if (!err)
		err = register_slots(e);
	if (err) {
		bsteer_engine_free(e);
		*errp = err;
		return NULL;
	}
	*errp = 0;
	return e;
}

int bsteer_engine_files(struct bsteer_engine *e, const int *targets,
			__u32 ntargets, const int *frontend, __u32 nfrontend)
{
	enum { NFILES = BSTEER_MAX_TARGETS + BSTEER_FRONTEND_FILES };
	int *fds;
	__u32 i;
	int err;

	if (ntargets > BSTEER_MAX_TARGETS || nfrontend > BSTEER_FRONTEND_FILES)
		return -EINVAL;
	fds = malloc(NFILES * sizeof(*fds));
	if (!fds)
		return -ENOMEM;
	for (i = 0; i < NFILES; i++)
		fds[i] = -1;
	for (i = 0; i < ntargets; i++)
		fds[i] = targets[i];
	for (i = 0; i < nfrontend; i++)
		fds[BSTEER_FRONTEND_FILE(i)] = frontend[i];
	e->ntargets = ntargets;
	err = io_uring_register_files(&e->ring, fds, NFILES);
	free(fds);
	if (err)
		bsteer_set_err("cannot register files: %s", strerror(-err));
	return err;
}

int bsteer_engine_target_file(struct bsteer_engine *e, __u32 t, int fd)
{
	int err;

	if (t >= e->ntargets)
		return -EINVAL;
	err = io_uring_register_files_update(&e->ring, t, &fd, 1);
	return err < 0 ? err : 0;
}

int bsteer_engine_cancel_fd(struct bsteer_engine *e, int fd, bool fixed)
{
	struct io_uring_sqe *sqe;
	int err;

	if (fd < 0)
		return -EBADF;
	sqe = bsteer_engine_sqe(e);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL |
				(fixed ? IORING_ASYNC_CANCEL_FD_FIXED : 0));
	io_uring_sqe_set_data64(sqe, bsteer_ud_tagged(BSTEER_UD_ENGINE, 0, 0));
	/*
	 * Now: a cancel is done at submission, so once this returns no
	 * cancelled op writes into its owner's buffers any more.
	 */
	err = io_uring_submit(&e->ring);
	return err < 0 ? err : 0;
}

int bsteer_engine_target_cancel(struct bsteer_engine *e, __u32 t, int fd)
{
	const struct bsteer_target_ops *ops;
	int err;

	if (t >= e->ntargets)
		return -EINVAL;
	err = bsteer_engine_cancel_fd(e, t, true);
	if (!err && fd >= 0)
		err = bsteer_engine_cancel_fd(e, fd, false);
	ops = tgt_ops(e, t);
	if (!err && ops->cancel)
		ops->cancel(e, t);
	return err;
}

int bsteer_engine_frontend_file(struct bsteer_engine *e, __u32 k, int fd)
{
	int err;

	if (k >= BSTEER_FRONTEND_FILES)
		return -EINVAL;
	err = io_uring_register_files_update(&e->ring, BSTEER_FRONTEND_FILE(k),
					     &fd, 1);
	return err < 0 ? err : 0;
}

void bsteer_engine_free(struct bsteer_engine *e)
{
	if (!e)
		return;
	if (e->ring_ok) {
		struct bsteer_ring *r = &e->in->rings[e->id];

		/* The kernel may hand this ctx address to someone else's ring. */
		if (r->ctx)
			bpf_map_delete_elem(e->in->map_fd[BSTEER_MAP_RING_CTX],
					    &r->ctx);
		r->active = 0;
		r->ctx = 0;
		io_uring_queue_exit(&e->ring);
		e->ring_ok = false;
	}
	targets_detach(e);
	pipes_close(e);
	if (e->twin_fd >= 0)
		close(e->twin_fd);
	free(e->req_stack);
	free(e->submitted);
	free(e->req_state);
	free(e->req_keep);
	free(e->req_owner);
	free(e->req_slot);
	free(e->req_issued);
	free(e->slot);
	free(e->op);
	free(e);
}
