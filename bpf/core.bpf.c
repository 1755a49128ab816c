// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Core hooks: ring discovery, the issue-side audit, the completion hook that
 * tail-calls the active policy, and the fallback entry point.
 */
#include "frontend.bpf.h"
#include "compat.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The slot pool: slot i is registered buffer i of every ring. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__uint(key_size, 4);
	__uint(value_size, 4096);
} slots SEC(".maps");

/* Who runs this instance, so a stale pin can be told from a live one. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bsteer_info);
} info SEC(".maps");

/* The active policy, swapped with one map update. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} policy SEC(".maps");

/*
 * Its SEC("syscall") twin, for the fallback. Sleepable programs cannot tail
 * call, so the engine reads the twin's id from here and runs it itself.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} policy_sys SEC(".maps");

/* Frontend header parsers, by frontend id. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, BSTEER_FRONTEND_IDS);
	__type(key, __u32);
	__type(value, __u32);
} parsers SEC(".maps");

/* io_ring_ctx pointer -> ring id, for the rings we own. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BSTEER_MAX_RINGS);
	__type(key, __u64);
	__type(value, __u32);
} ring_ctx SEC(".maps");

/* tid -> ring id, set by the engine just before it creates a ring. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BSTEER_MAX_RINGS);
	__type(key, __u32);
	__type(value, __u32);
} ring_claim SEC(".maps");

static __always_inline __u32 current_tid(void)
{
	return (__u32)bpf_get_current_pid_tgid();
}

SEC("tp_btf/io_uring_create")
int BPF_PROG(bsteer_ring_create, int fd, void *rctx, __u32 sq_entries,
	     __u32 cq_entries, __u32 flags)
{
	__u32 tid = current_tid();
	__u64 key = (__u64)rctx;
	struct bsteer_ring *r;
	__u32 *id;

	id = bpf_map_lookup_elem(&ring_claim, &tid);
	if (!id)
		return 0;
	r = bpf_map_lookup_elem(&rings, id);
	if (!r)
		return 0;
	if (bpf_map_update_elem(&ring_ctx, &key, id, BPF_ANY))
		return 0;
	r->ctx = key;
	r->owner_tid = tid;
	stat_inc(BSTEER_ST_RINGS);
	return 0;
}

static __always_inline __u8 fixed_dir(__u8 opcode)
{
	if (opcode == IORING_OP_READ_FIXED)
		return BSTEER_DIR_FILL;
	if (opcode == IORING_OP_WRITE_FIXED)
		return BSTEER_DIR_DRAIN;
	return 0;
}

/*
 * A frontend's payload receive (bsteer_frontend_recv) names its slot by
 * address, not index: find it in the request's record of the op instead.
 */
static __always_inline int recv_slot(__u64 ud, __u32 *slot)
{
	__u32 r = bsteer_ud_req(ud), op = bsteer_ud_op(ud);
	struct bsteer_req *rq;

	if (!bsteer_ud_ours(ud) || op >= BSTEER_REQ_OPS)
		return -1;
	rq = bpf_map_lookup_elem(&reqs, &r);
	if (!rq)
		return -1;
	*slot = rq->ops[op].slot;
	return 0;
}

/*
 * Issue side: count the kernel's fixed-buffer ops per slot and check each
 * against the lease, and the socket receives into a slot as well. Tracing
 * cannot stop the op; the executor's checks are what prevent a bad one.
 * This is the independent witness.
 */
SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(bsteer_issue, struct io_kiocb *req)
{
	__u64 key = (__u64)req->ctx;
	struct bsteer_slot *m;
	__u32 *ring, slot;
	__u8 opcode, need;

	ring = bpf_map_lookup_elem(&ring_ctx, &key);
	if (!ring)
		return 0;
	opcode = req->opcode;
	if (opcode == IORING_OP_RECV) {
		/* kops stays the fixed-buffer count the tracer can match. */
		if (recv_slot(req->cqe.user_data, &slot))
			return 0;
		need = BSTEER_DIR_FILL;
		stat_inc(BSTEER_ST_KRECVS);
		m = bpf_map_lookup_elem(&slot_meta, &slot);
		if (!m)
			return 0;
	} else {
		need = fixed_dir(opcode);
		if (!need)
			return 0;
		slot = req->buf_index;
		stat_inc(BSTEER_ST_KOPS);
		m = bpf_map_lookup_elem(&slot_meta, &slot);
		if (!m)
			return 0;
		__sync_fetch_and_add(&m->kops, 1);
	}
	if ((m->state != BSTEER_SLOT_LEASED &&
	     m->state != BSTEER_SLOT_RELEASING) || !(m->dir & need)) {
		stat_inc(BSTEER_ST_VIOLATIONS);
		emit_event(BSTEER_EV_VIOLATION, req->cqe.user_data, *ring, slot,
			   opcode, m->dir, 0);
	}
	return 0;
}

SEC("tp_btf/io_uring_complete")
int BPF_PROG(bsteer_complete, void *rctx, void *req, struct io_uring_cqe *cqe)
{
	__u64 key = (__u64)rctx;
	struct bsteer_scratch *s;
	struct bsteer_ring *r;
	__u32 zero = 0;
	__u32 *ring;
	__u64 ud;

	ring = bpf_map_lookup_elem(&ring_ctx, &key);
	if (!ring)
		return 0;
	if (!req) {
		stat_inc(BSTEER_ST_CQE_AUX);
		return 0;
	}
	ud = cqe->user_data;
	if (!bsteer_ud_ours(ud) && !bsteer_parse_ud_is(ud))
		return 0;
	stat_inc(BSTEER_ST_CQE_SEEN);
	/*
	 * Ring state belongs to the owner task; a completion posted anywhere
	 * else is counted and left to the owner's fallback, never decided here.
	 */
	r = bpf_map_lookup_elem(&rings, ring);
	if (!r || r->owner_tid != current_tid()) {
		stat_inc(BSTEER_ST_FOREIGN);
		return 0;
	}
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	s->user_data = ud;
	s->res = cqe->res;
	s->ring = *ring;
	/* A frontend header: its parser turns it into a request. */
	if (bsteer_parse_ud_is(ud)) {
		bpf_tail_call(ctx, &parsers, bsteer_parse_ud_parser(ud));
		return 0;
	}
	bpf_tail_call(ctx, &policy, 0);
	stat_inc(BSTEER_ST_NO_POLICY);
	return 0;
}

/* With no policy installed, every request fails; the books are still kept. */
static __always_inline void nopolicy_decide(struct bsteer_pctx *p)
{
	p->dec->flags |= BSTEER_DEC_DONE;
	p->dec->error = -EOPNOTSUPP;
}

BSTEER_FALLBACK_HOST(nopolicy, nopolicy_decide, BSTEER_POL_NONE)

/* Run when no twin is installed: keep the books and fail the requests. */
SEC("syscall")
int bsteer_fallback(struct bsteer_fallback_args *args)
{
	stat_inc(BSTEER_ST_NO_POLICY);
	return nopolicy_fallback(args);
}
