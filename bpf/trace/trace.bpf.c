// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Buffer-lifetime tracer for io_uring's registered buffers, in any process,
 * from tracepoints alone (this kernel refuses fentry/fexit programs).
 *
 * Tables: io_uring_register fires at the end of every registration call,
 * under the ring's lock, with the ring. For the buffer opcodes, the live
 * table is compared with a shadow copy (map tshadow) and the difference is
 * reported: what was installed, what was removed. A ring whose table was
 * filled before the trace began is read once, the first time it is seen.
 *
 * Uses: a request is keyed by its io_kiocb pointer. At submit, the node its
 * buffer index names is the one it will pin; at completion, req->buf_node
 * says which node it really held (REQ_F_BUF_NODE).
 *
 * The end of a lifetime: the kernel frees a node when its last reference
 * goes (io_rsrc_node.refs: the table's, plus one per request holding it).
 * No tracepoint fires there, so it is followed from both sides: the table
 * letting go (unregister, update, a replacing clone) and each holder's
 * completion. A node that leaves the table with holders is freed at the
 * last holder's completion; the rest are freed with their ring, whose
 * teardown is io_ring_exit_work on a workqueue (workqueue_execute_end).
 *
 * Filtering happens where a ring is first seen, in the task that owns it;
 * everything later is correlated by pointer, because the end of a lifetime
 * often runs in a kworker or an io-wq thread.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "bsteer.h"
#include "bsteer_trace.h"
#include "compat.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader before load. */
const volatile bool filter_pid = false;	/* only processes in tpids */
const volatile bool filter_comm = false;	/* ... or named targ_comm */
const volatile bool follow_forks = true;	/* children join tpids */
const volatile bool xcheck = false;		/* bs_* maps are an instance's */
const volatile char targ_comm[16] = {};
const volatile __u64 wakeup_bytes = 4 << 20;	/* a quarter of "events" */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BSTEER_TS__MAX);
	__type(key, __u32);
	__type(value, __u64);
} tstats SEC(".maps");

/* Processes traced: 1 = asked for (or a child of one), 2 = owns a ring. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BSTEER_TRACE_PIDS);
	__type(key, __u32);
	__type(value, __u8);
} tpids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BSTEER_TRACE_RINGS);
	__type(key, __u64);
	__type(value, struct bsteer_tring);
} trings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BSTEER_TRACE_NODES);
	__type(key, __u64);
	__type(value, struct bsteer_tnode);
} tnodes SEC(".maps");

struct shadow_key {
	__u64 ctx;
	__u32 index;
	__u32 pad0;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BSTEER_TRACE_SHADOW);
	__type(key, struct shadow_key);
	__type(value, __u64);
} tshadow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BSTEER_TRACE_USES);
	__type(key, __u64);
	__type(value, struct bsteer_tuse);
} tuses SEC(".maps");

/*
 * A bsteer instance's own maps, for the cross-check; the loader points
 * these at the instance's pins (bpf_map__reuse_fd) or leaves them empty.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BSTEER_MAX_RINGS);
	__type(key, __u64);
	__type(value, __u32);
} bs_ring_ctx SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bsteer_slot);
} bs_slot_meta SEC(".maps");

static __always_inline void tstat_inc(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&tstats, &idx);

	if (c)
		(*c)++;
}

static __always_inline __u32 cur_tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

static __always_inline struct bsteer_tev *ev_new(__u8 kind)
{
	struct bsteer_tev *e;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		tstat_inc(BSTEER_TS_DROPS);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->tid = (__u32)bpf_get_current_pid_tgid();
	return e;
}

/*
 * One wakeup per event would cost the traced program a context switch
 * each. Userspace polls the buffer on a timer instead, and is woken early
 * only when the buffer is a quarter full.
 */
static __always_inline void ev_send(struct bsteer_tev *e)
{
	long flags = BPF_RB_NO_WAKEUP;

	tstat_inc(BSTEER_TS_EVENTS);
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

/* The command of the current task's process (not of an io-wq thread). */
static __always_inline void leader_comm(char out[16])
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct task_struct *leader = BPF_CORE_READ(t, group_leader);

	bpf_probe_read_kernel_str(out, 16, &leader->comm);
}

static __always_inline bool comm_is_target(void)
{
	char c[16];
	int i;

	leader_comm(c);
	for (i = 0; i < 16; i++) {
		if (c[i] != targ_comm[i])
			return false;
		if (!c[i])
			break;
	}
	return true;
}

/* May the current task's rings be traced? Remembers a yes. */
static __always_inline bool task_traced(__u32 tgid)
{
	__u8 yes = 1;

	if (!filter_pid && !filter_comm)
		return true;
	if (bpf_map_lookup_elem(&tpids, &tgid))
		return true;
	if (filter_comm && comm_is_target()) {
		bpf_map_update_elem(&tpids, &tgid, &yes, BPF_NOEXIST);
		return true;
	}
	return false;
}

/*
 * The ring's record, created if the current task may be traced. Only the
 * owner's tasks (submitter, io-wq, SQPOLL: one tgid) ever create it.
 */
static __always_inline struct bsteer_tring *ring_track(void *ctx)
{
	struct bsteer_tring *r, n = {};
	__u64 key = (__u64)ctx;
	__u32 tgid;
	__u8 owner = 2;

	r = bpf_map_lookup_elem(&trings, &key);
	if (r)
		return r;
	tgid = cur_tgid();
	if (!task_traced(tgid))
		return NULL;
	n.pid = tgid;
	leader_comm(n.comm);
	bpf_map_update_elem(&trings, &key, &n, BPF_NOEXIST);
	bpf_map_update_elem(&tpids, &tgid, &owner, BPF_ANY);
	return bpf_map_lookup_elem(&trings, &key);
}

static __always_inline __u32 table_nr(void *ctx)
{
	struct io_ring_ctx *c = ctx;
	__u32 nr = BPF_CORE_READ(c, buf_table.nr);

	return nr > BSTEER_IO_MAX_REG_BUFFERS ? BSTEER_IO_MAX_REG_BUFFERS : nr;
}

static __always_inline __u64 table_nodes(void *ctx)
{
	struct io_ring_ctx *c = ctx;

	return (__u64)BPF_CORE_READ(c, buf_table.nodes);
}

/* Entry @idx of a live table of @nr (a node pointer, or 0). */
static __always_inline __u64 table_node(__u64 nodes, __u32 idx, __u32 nr)
{
	__u64 node = 0;

	if (idx >= nr)
		return 0;
	bpf_probe_read_kernel(&node, sizeof(node), (void *)(nodes + (__u64)idx * 8));
	return node;
}

/* ---- events about nodes ---- */

static __always_inline void ev_node(__u8 kind, __u64 node,
				    struct bsteer_tnode *n, __u8 source)
{
	struct bsteer_tev *e = ev_new(kind);
	struct bsteer_tring *r;

	if (!e)
		return;
	e->ctx = n->ctx;
	e->node = node;
	e->pid = n->pid;
	e->index = n->index;
	e->addr = n->addr;
	e->len = n->len;
	e->t0 = n->reg_ns;
	e->t1 = n->unreg_ns;
	e->uses = n->uses;
	e->res = n->holders;
	e->flags = n->flags;
	e->source = source;
	r = bpf_map_lookup_elem(&trings, &n->ctx);
	if (r)
		__builtin_memcpy(e->comm, r->comm, sizeof(e->comm));
	ev_send(e);
}

/* The node's last reference is gone: the real end of its lifetime. */
static __always_inline void node_free(__u64 node, struct bsteer_tnode *n,
				      __u8 source)
{
	struct shadow_key k = { .ctx = n->ctx, .index = n->index };
	__u64 *sh;

	sh = bpf_map_lookup_elem(&tshadow, &k);
	if (sh && *sh == node)
		bpf_map_delete_elem(&tshadow, &k);
	if (!n->unreg_ns)
		n->unreg_ns = bpf_ktime_get_ns();
	ev_node(BSTEER_TEV_FREE, node, n, source);
	bpf_map_delete_elem(&tnodes, &node);
}

/* Read a node's buffer into a fresh record. */
static __always_inline void node_fill(struct bsteer_tnode *n, __u64 node)
{
	struct io_rsrc_node *rn = (void *)node;
	struct io_mapped_ubuf *imu = BPF_CORE_READ(rn, buf);

	n->addr = BPF_CORE_READ(imu, ubuf);
	n->len = BPF_CORE_READ(imu, len);
	if (imu_is_kbuf(imu))
		n->flags |= BSTEER_TEVF_KBUF;
	n->reg_ns = bpf_ktime_get_ns();
}

/* ---- table walks ---- */

struct walk {
	__u64 ctx;
	__u64 nodes;		/* the live table's node array, read once */
	__u64 stamp;		/* this walk's time: marks what it removed */
	__u32 nr;		/* live entries */
	__u32 removed;
	__u32 pid;
	__u32 filled;		/* non-empty live entries seen */
	__u16 flags;		/* for REG events */
	__u8  source;
	__u8  pad0;
};

/* Pass 1: an entry whose node left (or changed): mark the old node. */
static long walk_removed(__u64 i, void *data)
{
	struct walk *w = data;
	struct shadow_key k = { .ctx = w->ctx, .index = (__u32)i };
	struct bsteer_tnode *n;
	__u64 old, live, *sh;

	sh = bpf_map_lookup_elem(&tshadow, &k);
	if (!sh)
		return 0;
	old = *sh;
	live = table_node(w->nodes, k.index, w->nr);
	if (old == live)
		return 0;
	bpf_map_delete_elem(&tshadow, &k);
	n = bpf_map_lookup_elem(&tnodes, &old);
	if (!n || n->unreg_ns)
		return 0;
	n->unreg_ns = w->stamp;
	n->holders = 0;
	w->removed++;
	return 0;
}

/* Pass 2: requests in flight that pinned a node just let go of. */
static long count_holder(void *map, __u64 *key, struct bsteer_tuse *u,
			 struct walk *w)
{
	struct bsteer_tnode *n;

	if (u->ctx != w->ctx || !u->node)
		return 0;
	n = bpf_map_lookup_elem(&tnodes, &u->node);
	if (n && n->unreg_ns == w->stamp)
		n->holders = 1;
	return 0;
}

/*
 * Pass 3: each node let go of. With no holder the table's reference was
 * the last: freed now. Otherwise it is alive for sure, and its refcount
 * says how many requests hold it, any submitted before we began included.
 */
static long settle_removed(void *map, __u64 *key, struct bsteer_tnode *n,
			   struct walk *w)
{
	struct io_rsrc_node *rn = (void *)*key;
	int refs;

	if (n->ctx != w->ctx || n->unreg_ns != w->stamp)
		return 0;
	if (n->holders) {
		refs = BPF_CORE_READ(rn, refs);
		/* 0: the holder we knew of was queued and never pinned it. */
		n->holders = refs > 0 && refs <= BSTEER_TRACE_USES ? refs : 0;
	}
	ev_node(BSTEER_TEV_UNREG, *key, n, w->source);
	if (!n->holders)
		node_free(*key, n, w->source);
	return 0;
}

/* Pass 4: a live entry the shadow does not have: a node came. */
static long walk_added(__u64 i, void *data)
{
	struct walk *w = data;
	struct shadow_key k = { .ctx = w->ctx, .index = (__u32)i };
	struct bsteer_tnode fresh = {}, *n;
	__u64 live, *sh;

	live = table_node(w->nodes, k.index, w->nr);
	if (!live)
		return 0;
	w->filled++;
	sh = bpf_map_lookup_elem(&tshadow, &k);
	if (sh && *sh == live)
		return 0;
	bpf_map_update_elem(&tshadow, &k, &live, BPF_ANY);
	n = bpf_map_lookup_elem(&tnodes, &live);
	if (!n) {
		fresh.ctx = w->ctx;
		fresh.pid = w->pid;
		fresh.index = k.index;
		fresh.source = w->source;
		fresh.flags = w->flags;
		node_fill(&fresh, live);
		if (bpf_map_update_elem(&tnodes, &live, &fresh, BPF_NOEXIST))
			tstat_inc(BSTEER_TS_NODES_FULL);
		n = &fresh;
	}
	ev_node(BSTEER_TEV_REG, live, n, w->source);
	return 0;
}

/*
 * Bring the shadow of [0, span) in line with the live table. Removals go
 * first: a node freed at one index can be reused at another in one call.
 */
static __always_inline __u32 table_sync(void *ctx, struct bsteer_tring *r,
					__u32 span, __u8 source, __u16 flags)
{
	struct walk w = {
		.ctx = (__u64)ctx,
		.stamp = bpf_ktime_get_ns(),
		.nodes = table_nodes(ctx),
		.nr = table_nr(ctx),
		.pid = r->pid,
		.source = source,
		.flags = flags,
	};

	if (w.nr > span)
		span = w.nr;
	if (span > BSTEER_IO_MAX_REG_BUFFERS)
		span = BSTEER_IO_MAX_REG_BUFFERS;
	bpf_loop(span, walk_removed, &w, 0);
	if (w.removed) {
		bpf_for_each_map_elem(&tuses, count_holder, &w, 0);
		bpf_for_each_map_elem(&tnodes, settle_removed, &w, 0);
	}
	bpf_loop(span, walk_added, &w, 0);
	r->nr = w.nr;
	return w.filled;
}

static __always_inline void ev_table(void *ctx, struct bsteer_tring *r,
				     __u32 filled, __u8 source, __u16 flags)
{
	struct bsteer_tev *e = ev_new(BSTEER_TEV_TABLE);

	if (!e)
		return;
	e->ctx = (__u64)ctx;
	e->pid = r->pid;
	__builtin_memcpy(e->comm, r->comm, sizeof(e->comm));
	e->index = r->nr;
	e->res = filled;
	e->source = source;
	e->flags = flags;
	ev_send(e);
}

/* A ring first seen with a table already there: report it once. */
static __always_inline void ring_discover(void *ctx, struct bsteer_tring *r)
{
	__u32 filled;

	if (r->walked)
		return;
	r->walked = 1;
	if (!table_nr(ctx))
		return;
	filled = table_sync(ctx, r, 0, BSTEER_TSRC_DISCOVERED,
			    BSTEER_TEVF_DISCOVERED);
	ev_table(ctx, r, filled, BSTEER_TSRC_DISCOVERED, BSTEER_TEVF_DISCOVERED);
}

static __always_inline __u8 register_source(unsigned int opcode)
{
	switch (opcode) {
	case IORING_REGISTER_BUFFERS:
	case IORING_REGISTER_BUFFERS2:
		return BSTEER_TSRC_REGISTER;
	case IORING_UNREGISTER_BUFFERS:
		return BSTEER_TSRC_UNREGISTER;
	case IORING_REGISTER_BUFFERS_UPDATE:
		return BSTEER_TSRC_UPDATE;
	case IORING_REGISTER_CLONE_BUFFERS:
		return BSTEER_TSRC_CLONE;
	}
	return 0;
}

/* The end of io_uring_register(2), in the caller, under the ring's lock. */
SEC("tp_btf/io_uring_register")
int BPF_PROG(trace_register, void *ring, unsigned int opcode,
	     unsigned int nr_files, unsigned int nr_bufs, long ret)
{
	__u8 source = register_source(opcode);
	struct bsteer_tring *r;
	__u32 filled;
	__u16 flags;

	if (!source)
		return 0;
	r = ring_track(ring);
	if (!r)
		return 0;
	if (!r->walked && source != BSTEER_TSRC_REGISTER) {
		/* What was there before is unknown; what is there now is not. */
		ring_discover(ring, r);
		return 0;
	}
	r->walked = 1;
	filled = table_sync(ring, r, r->nr, source, 0);
	if (ret || (source != BSTEER_TSRC_REGISTER && source != BSTEER_TSRC_CLONE))
		return 0;
	flags = filled < r->nr ? BSTEER_TEVF_SPARSE : 0;
	ev_table(ring, r, filled, source, flags);
	return 0;
}

/* ---- uses ---- */

/* Does the request pin a registered buffer (by buf_index)? */
static __always_inline bool uses_fixed_buffer(struct io_kiocb *req)
{
	struct io_uring_cmd *cmd;

	switch (req->opcode) {
	case IORING_OP_READ_FIXED:
	case IORING_OP_WRITE_FIXED:
	case IORING_OP_READV_FIXED:
	case IORING_OP_WRITEV_FIXED:
		return true;
	case IORING_OP_URING_CMD:
		cmd = (void *)&req->cmd;
		return BPF_CORE_READ(cmd, flags) & IORING_URING_CMD_FIXED;
	}
	/* Sends with IORING_RECVSEND_FIXED_BUF and vectored fixed ops (6.15). */
	return req->flags & REQ_F_IMPORT_BUFFER;
}

static __always_inline __u32 rw_len(struct io_kiocb *req)
{
	struct io_rw *rw = (void *)&req->cmd;

	switch (req->opcode) {
	case IORING_OP_READ_FIXED:
	case IORING_OP_WRITE_FIXED:
		return BPF_CORE_READ(rw, len);
	}
	return 0;
}

static __always_inline void ev_use(__u8 kind, __u64 req, struct bsteer_tuse *u,
				   __u64 node, __s32 res, __u16 flags)
{
	struct bsteer_tev *e = ev_new(kind);

	if (!e)
		return;
	e->ctx = u->ctx;
	e->node = node;
	e->req = req;
	e->addr = u->user_data;
	e->t0 = u->submit_ns;
	e->pid = u->pid;
	e->tid = u->tid;
	e->index = u->index;
	e->len = u->len;
	e->res = res;
	e->flags = u->flags | flags;
	e->opcode = u->opcode;
	ev_send(e);
}

static __always_inline void ev_xcheck(__u64 req, struct bsteer_tuse *u,
				      __s32 why)
{
	struct bsteer_tev *e;

	tstat_inc(BSTEER_TS_XCHECK);
	e = ev_new(BSTEER_TEV_XCHECK);
	if (!e)
		return;
	e->ctx = u->ctx;
	e->node = u->node;
	e->req = req;
	e->addr = u->user_data;
	e->pid = u->pid;
	e->index = u->index;
	e->res = why;
	e->opcode = u->opcode;
	ev_send(e);
}

/* A holder of @node let go; the last one of an unregistered node frees it. */
static __always_inline void holder_drop(__u64 node, struct bsteer_tnode *n)
{
	if (!n || !n->holders)
		return;
	if (__sync_sub_and_fetch(&n->holders, 1) == 0 && n->unreg_ns) {
		n->flags |= BSTEER_TEVF_OUTLIVED;
		node_free(node, n, BSTEER_TSRC_UNREGISTER);
	}
}

static __always_inline void holder_put(__u64 node)
{
	holder_drop(node, bpf_map_lookup_elem(&tnodes, &node));
}

/* bsteer instances: the executor leases a slot before it submits on it. */
static __always_inline void xcheck_submit(__u64 req, struct bsteer_tuse *u)
{
	struct bsteer_slot *m;
	__u32 slot = u->index;

	if (!bpf_map_lookup_elem(&bs_ring_ctx, &u->ctx))
		return;
	u->flags |= BSTEER_TEVF_BSTEER;
	m = bpf_map_lookup_elem(&bs_slot_meta, &slot);
	if (!m || m->state == BSTEER_SLOT_FREE) {
		ev_xcheck(req, u, BSTEER_XC_FREE_AT_ISSUE);
		return;
	}
	u->slot_gen = m->gen;
}

SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(trace_submit, struct io_kiocb *req)
{
	struct io_rsrc_node **nodes;
	struct bsteer_tuse u = {}, *old;
	struct bsteer_tring *r;
	__u64 key = (__u64)req;
	void *ring = req->ctx;
	__u32 nr;

	r = ring_track(ring);
	if (!r)
		return 0;
	ring_discover(ring, r);
	if (!uses_fixed_buffer(req))
		return 0;
	u.ctx = (__u64)ring;
	u.submit_ns = bpf_ktime_get_ns();
	u.user_data = req->cqe.user_data;
	u.pid = r->pid;
	u.tid = (__u32)bpf_get_current_pid_tgid();
	u.index = req->buf_index;
	u.opcode = req->opcode;
	u.len = rw_len(req);
	/* req->ctx is a BTF pointer: direct loads, no helper calls. */
	nr = req->ctx->buf_table.nr;
	if (u.index < nr && u.index < BSTEER_IO_MAX_REG_BUFFERS) {
		nodes = req->ctx->buf_table.nodes;
		bpf_probe_read_kernel(&u.node, sizeof(u.node), &nodes[u.index]);
	}
	if (xcheck)
		xcheck_submit(key, &u);
	if (!bpf_map_update_elem(&tuses, &key, &u, BPF_NOEXIST))
		return 0;
	old = bpf_map_lookup_elem(&tuses, &key);
	if (old) {
		/* Recycled with no completion seen (CQ overflow): say so. */
		tstat_inc(BSTEER_TS_LOST);
		ev_use(BSTEER_TEV_USE, key, old, old->node, 0, BSTEER_TEVF_LOST);
		holder_put(old->node);
		*old = u;
		return 0;
	}
	tstat_inc(BSTEER_TS_USES_FULL);
	return 0;
}

SEC("tp_btf/io_uring_queue_async_work")
int BPF_PROG(trace_async, struct io_kiocb *req, int rw)
{
	__u64 key = (__u64)req;
	struct bsteer_tuse *u = bpf_map_lookup_elem(&tuses, &key);

	if (u)
		u->flags |= BSTEER_TEVF_ASYNC;
	return 0;
}

/* Has the task that submitted @req (of process @pid) begun to exit? */
static __always_inline bool owner_exiting(struct io_kiocb *req, __u32 pid)
{
	struct task_struct *t;
	unsigned int sflags;

	/* Most completions run in the owner's own context: no probe reads. */
	if (cur_tgid() == pid) {
		t = bpf_get_current_task_btf();
		return (t->flags & BSTEER_PF_EXITING) ||
		       (t->signal->flags & BSTEER_SIGNAL_GROUP_EXIT);
	}
	t = BPF_CORE_READ(req, tctx, task);
	if (!t)
		return false;
	if (BPF_CORE_READ(t, flags) & BSTEER_PF_EXITING)
		return true;
	sflags = BPF_CORE_READ(t, signal, flags);
	return sflags & BSTEER_SIGNAL_GROUP_EXIT;
}

/*
 * A node seen in use that no table walk reported: a kernel (bvec) buffer,
 * installed by a driver's uring_cmd rather than io_uring_register(2).
 */
static __always_inline struct bsteer_tnode *node_late(__u64 node, __u64 ctx,
						      __u32 index,
						      struct bsteer_tring *r)
{
	struct bsteer_tnode fresh = {
		.ctx = ctx,
		.pid = r->pid,
		.index = index,
		.source = BSTEER_TSRC_LATE,
	};

	node_fill(&fresh, node);
	if (!(fresh.flags & BSTEER_TEVF_KBUF)) {
		/* A user buffer we called freed is still held: say so. */
		tstat_inc(BSTEER_TS_LATE_HOLDER);
		return NULL;
	}
	if (bpf_map_update_elem(&tnodes, &node, &fresh, BPF_NOEXIST)) {
		tstat_inc(BSTEER_TS_NODES_FULL);
		return NULL;
	}
	ev_node(BSTEER_TEV_REG, node, &fresh, BSTEER_TSRC_LATE);
	return bpf_map_lookup_elem(&tnodes, &node);
}

SEC("tp_btf/io_uring_complete")
int BPF_PROG(trace_complete, void *ring, void *reqp, struct io_uring_cqe *cqe)
{
	struct io_kiocb *req;
	__u64 key = (__u64)reqp, rk = (__u64)ring, node = 0;
	struct bsteer_tuse *u, none = {};
	struct bsteer_tnode *n = NULL;
	struct bsteer_tring *r;
	struct bsteer_slot *m;
	__u16 flags = 0;
	__u32 slot;

	/* No request: an auxiliary CQE (multishot, msg_ring, buffer tags). */
	if (!reqp)
		return 0;
	/* The prototype says void *: cast it for direct loads. */
	req = BSTEER_CAST(struct io_kiocb, reqp);
	if (req->flags & REQ_F_BUF_NODE)
		node = (__u64)req->buf_node;
	u = bpf_map_lookup_elem(&tuses, &key);
	if (!u && !node)
		return 0;
	if (!u) {
		/* Submitted before we began, or a SEND_ZC notification. */
		r = bpf_map_lookup_elem(&trings, &rk);
		if (!r)
			return 0;
		none.ctx = rk;
		none.pid = r->pid;
		none.user_data = cqe->user_data;
		none.index = req->buf_index;
		none.opcode = req->opcode;
		none.flags = BSTEER_TEVF_NOSUBMIT;
		u = &none;
	}
	if (node) {
		n = bpf_map_lookup_elem(&tnodes, &node);
		if (!n) {
			r = bpf_map_lookup_elem(&trings, &rk);
			if (r)
				n = node_late(node, rk, u->index, r);
		}
		if (owner_exiting(req, u->pid))
			flags |= BSTEER_TEVF_HELD;
		ev_use(BSTEER_TEV_USE, key, u, node, cqe->res, flags);
		if (n)
			__sync_fetch_and_add(&n->uses, 1);
	}
	if (u->flags & BSTEER_TEVF_BSTEER) {
		/* Leased again while this op held it: freed too early. */
		slot = u->index;
		m = bpf_map_lookup_elem(&bs_slot_meta, &slot);
		if (m && m->gen != u->slot_gen)
			ev_xcheck(key, u, BSTEER_XC_RELEASED);
	}
	/* A first CQE of more (SEND_ZC): the notification holds the buffer. */
	if (u != &none && (cqe->flags & IORING_CQE_F_MORE) && node)
		return 0;
	/*
	 * Holders are counted once the table has let go (at unregister, from
	 * the refcount): this one is gone now. One whose buffer was imported
	 * late from a node other than the one it named at submit counts on
	 * the node it really held.
	 */
	if (n && n->unreg_ns)
		holder_drop(node, n);
	if (u != &none)
		bpf_map_delete_elem(&tuses, &key);
	return 0;
}

/* ---- rings and processes ---- */

struct teardown {
	__u64 ctx;
};

static long teardown_use(void *map, __u64 *key, struct bsteer_tuse *u,
			 struct teardown *t)
{
	if (u->ctx != t->ctx)
		return 0;
	if (u->node)
		ev_use(BSTEER_TEV_HELD, *key, u, u->node, 0, 0);
	bpf_map_delete_elem(&tuses, key);
	return 0;
}

static long teardown_node(void *map, __u64 *key, struct bsteer_tnode *n,
			  struct teardown *t)
{
	if (n->ctx != t->ctx)
		return 0;
	if (!n->unreg_ns)
		ev_node(BSTEER_TEV_UNREG, *key, n, BSTEER_TSRC_TEARDOWN);
	node_free(*key, n, BSTEER_TSRC_TEARDOWN);
	return 0;
}

/* The ring is gone: whatever it still had is freed, and nobody holds it. */
static __always_inline void ring_finish(__u64 ctx)
{
	struct teardown t = { .ctx = ctx };

	bpf_for_each_map_elem(&tuses, teardown_use, &t, 0);
	bpf_for_each_map_elem(&tnodes, teardown_node, &t, 0);
	bpf_map_delete_elem(&trings, &ctx);
}

/*
 * io_ring_exit_work frees the ring (io_ring_ctx_free) when its last
 * request is done; its work item is the ring's exit_work.
 */
SEC("tp_btf/workqueue_execute_end")
int BPF_PROG(trace_work_end, struct work_struct *work, void *fn)
{
	__u64 rk = (__u64)work - bpf_core_field_offset(struct io_ring_ctx,
							exit_work);

	if (bpf_map_lookup_elem(&trings, &rk))
		ring_finish(rk);
	return 0;
}

/*
 * A new ring: its table is empty, so whatever a clone or an update puts
 * there later is known for what it is. A record still there for this
 * pointer is a freed ring whose end was missed.
 */
SEC("tp_btf/io_uring_create")
int BPF_PROG(trace_ring_create, int fd, void *ring, __u32 sq_entries,
	     __u32 cq_entries, __u32 flags)
{
	__u64 rk = (__u64)ring;
	struct bsteer_tring *r;

	if (bpf_map_lookup_elem(&trings, &rk))
		ring_finish(rk);
	r = ring_track(ring);
	if (r)
		r->walked = 1;
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(trace_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, ctgid = child->tgid;
	__u8 yes = 1;

	if (!filter_pid || !follow_forks || ptgid == ctgid)
		return 0;
	if (bpf_map_lookup_elem(&tpids, &ptgid))
		bpf_map_update_elem(&tpids, &ctgid, &yes, BPF_NOEXIST);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(trace_exit, struct task_struct *task)
{
	__u32 tgid = task->tgid;
	struct bsteer_tev *e;

	/* The last thread out: its signal struct has no live threads left. */
	if (BPF_CORE_READ(task, signal, live.counter) ||
	    !bpf_map_lookup_elem(&tpids, &tgid))
		return 0;
	e = ev_new(BSTEER_TEV_EXIT);
	if (e) {
		e->pid = tgid;
		BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
		ev_send(e);
	}
	bpf_map_delete_elem(&tpids, &tgid);
	return 0;
}
