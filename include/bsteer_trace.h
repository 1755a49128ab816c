/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * bsteer trace ABI: what bpf/trace/trace.bpf.c hands to `bsteer trace`.
 *
 * The tracer follows io_uring's registered (fixed) buffers in any process,
 * from tracepoints alone (tp_btf): the io_uring tracepoints carry no buffer
 * index, so a lifetime is pieced together from kernel pointers: the ring
 * (struct io_ring_ctx), the table entry's resource node (struct
 * io_rsrc_node, which lives until its last request lets go) and the
 * request (struct io_kiocb, correlated by pointer, because applications
 * reuse user_data).
 *
 * Events travel over the ring buffer "events". Three maps are also read by
 * userspace while tracing: "tnodes" (live nodes), "tuses" (requests that
 * hold a buffer now) and "trings" (rings seen). Times are
 * bpf_ktime_get_ns(), i.e. CLOCK_MONOTONIC.
 */
#ifndef BSTEER_TRACE_H
#define BSTEER_TRACE_H

#ifndef __bpf__
#include <linux/types.h>
#endif

#define BSTEER_TRACE_ABI	1

/* Sizes of the tracer's maps; the loader may raise them. */
#define BSTEER_TRACE_NODES	65536	/* live resource nodes */
#define BSTEER_TRACE_USES	65536	/* requests in flight */
#define BSTEER_TRACE_RINGS	4096
#define BSTEER_TRACE_PIDS	4096	/* processes followed with -p */
#define BSTEER_TRACE_SHADOW	262144	/* (ring, index) -> node */

enum bsteer_tev_kind {
	BSTEER_TEV_TABLE	= 1,	/* a buffer table appeared: index = size,
					 * res = entries filled */
	BSTEER_TEV_REG		= 2,	/* a buffer installed at (ring, index) */
	BSTEER_TEV_UNREG	= 3,	/* removed from the table; the node lives
					 * on while requests hold it */
	BSTEER_TEV_FREE		= 4,	/* node freed: the real end of a lifetime */
	BSTEER_TEV_USE		= 5,	/* a request that used a buffer completed */
	BSTEER_TEV_HELD		= 6,	/* a request still held a buffer when its
					 * task began to exit */
	BSTEER_TEV_EXIT		= 7,	/* a traced process exited */
	BSTEER_TEV_XCHECK	= 8,	/* bsteer's slot state disagrees with the
					 * kernel's use of the buffer */
	BSTEER_TEV__MAX,
};

/* How a table change came about (event source). */
enum bsteer_tev_source {
	BSTEER_TSRC_REGISTER	= 1,	/* IORING_REGISTER_BUFFERS(2) */
	BSTEER_TSRC_UPDATE	= 2,	/* IORING_REGISTER_BUFFERS_UPDATE */
	BSTEER_TSRC_CLONE	= 3,	/* IORING_REGISTER_CLONE_BUFFERS */
	BSTEER_TSRC_UNREGISTER	= 4,	/* IORING_UNREGISTER_BUFFERS */
	BSTEER_TSRC_TEARDOWN	= 5,	/* the ring was freed */
	BSTEER_TSRC_DISCOVERED	= 6,	/* in the table when the trace began */
	BSTEER_TSRC_LATE	= 7,	/* first seen in use: a kernel (bvec)
					 * buffer, which changes no table
					 * through io_uring_register */
};

/* Event flags. */
#define BSTEER_TEVF_KBUF	0x01	/* kernel-registered (bvec) buffer */
#define BSTEER_TEVF_ASYNC	0x02	/* the request went to io-wq */
#define BSTEER_TEVF_NOSUBMIT	0x04	/* no submit seen (e.g. a SEND_ZC
					 * notification): t0 is the import */
#define BSTEER_TEVF_LOST	0x08	/* the request was reused without a
					 * completion (CQ overflow): res = 0 */
#define BSTEER_TEVF_HELD	0x10	/* completed after its task began to
					 * exit: held a buffer at the exit */
#define BSTEER_TEVF_BSTEER	0x20	/* on a ring of a bsteer instance */
#define BSTEER_TEVF_SPARSE	0x40	/* TABLE: registered sparse */
#define BSTEER_TEVF_DISCOVERED	0x80	/* registered before the trace began */
#define BSTEER_TEVF_OUTLIVED	0x100	/* FREE: unregistered while requests held
					 * it, freed at the last one's completion */

/* Cross-check failures (event res). */
enum bsteer_xcheck {
	BSTEER_XC_FREE_AT_ISSUE	= 1,	/* an op was submitted on a slot that
					 * bsteer had free */
	BSTEER_XC_RELEASED	= 2,	/* the slot was leased again while a
					 * request still held it */
	BSTEER_XC_FREE_HELD	= 3,	/* userspace: free for > 1 s while held */
};

/*
 * One event. Fields that a kind does not use are zero.
 *   TABLE  ctx, index (table size), res (entries filled), source
 *   REG    ctx, node, addr, len, index, source, flags
 *   UNREG  ctx, node, addr, len, index, source, t0 (registered), uses,
 *          res (requests still holding it)
 *   FREE   ctx, node, addr, len, index, source (what removed it), t0
 *          (registered), t1 (unregistered), uses (requests that used it)
 *   USE    ctx, node, req, index, opcode, addr (user_data), len (bytes
 *          asked), res (CQE result), t0 (submit), ts (complete)
 *   HELD   as USE for a request that never completed before its ring was
 *          freed; ts = the ring's teardown, res = 0
 *   EXIT   pid, comm
 *   XCHECK ctx, node, req, index, res (enum bsteer_xcheck), opcode
 */
struct bsteer_tev {
	__u64 ts_ns;
	__u64 ctx;
	__u64 node;
	__u64 req;
	__u64 addr;
	__u64 t0;
	__u64 t1;
	__u32 pid;		/* tgid of the ring's owner */
	__u32 tid;		/* task the event happened in */
	__u32 index;
	__u32 len;
	__s32 res;
	__u32 uses;
	__u16 flags;		/* BSTEER_TEVF_* */
	__u8  kind;		/* enum bsteer_tev_kind */
	__u8  opcode;		/* io_uring opcode */
	__u8  source;		/* enum bsteer_tev_source */
	__u8  pad0[3];
	char  comm[16];		/* the ring owner's command */
};

/*
 * A live resource node: map "tnodes", keyed by the node pointer. A node
 * leaves the table at unregister but is freed only when the last request
 * holding it lets go; "holders" counts those requests. Once unregistered,
 * it starts from the kernel's own count (io_rsrc_node.refs).
 */
struct bsteer_tnode {
	__u64 ctx;
	__u64 addr;
	__u64 reg_ns;
	__u64 unreg_ns;		/* 0 while in the table */
	__u32 pid;
	__u32 index;
	__u32 len;
	__u32 uses;		/* requests that completed on it */
	__u32 holders;		/* requests that hold it now */
	__u16 flags;		/* BSTEER_TEVF_KBUF, _DISCOVERED */
	__u8  source;
	__u8  pad0;
};

/* A request that will hold a buffer: map "tuses", keyed by its io_kiocb. */
struct bsteer_tuse {
	__u64 ctx;
	__u64 node;		/* the table's node at its index at submit */
	__u64 submit_ns;
	__u64 user_data;
	__u32 pid;
	__u32 tid;
	__u32 index;
	__u32 len;
	__u32 slot_gen;		/* bsteer rings: the lease at submit */
	__u16 flags;		/* BSTEER_TEVF_* */
	__u8  opcode;
	__u8  pad0;
};

/* A ring seen by the tracer: map "trings", keyed by the ctx pointer. */
struct bsteer_tring {
	__u32 pid;
	__u32 nr;		/* table size as last walked */
	__u32 walked;		/* the table was read once */
	__u32 pad0;
	char  comm[16];
};

/* Counters: per-CPU array "tstats", indexed by this enum. */
enum bsteer_tstat {
	BSTEER_TS_EVENTS,	/* events written */
	BSTEER_TS_DROPS,	/* events lost: ring buffer full */
	BSTEER_TS_NODES_FULL,	/* nodes not tracked: map full */
	BSTEER_TS_USES_FULL,	/* requests not tracked: map full */
	BSTEER_TS_XCHECK,	/* cross-check failures in BPF */
	BSTEER_TS_LOST,		/* requests reused without a completion */
	BSTEER_TS_LATE_HOLDER,	/* a request held a node already called free */
	BSTEER_TS__MAX,
};

#endif /* BSTEER_TRACE_H */
