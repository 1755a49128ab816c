/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The engine's insides, shared by the files of user/core/ alone: one ring
 * driven by one thread, its share of the slots and request records, and
 * the engine's own record of every lease and op. Frontends and targets see
 * the engine through libbsteer.h only.
 *
 *   pool.c      slots: leases, the free stack, a slot's pipe
 *   request.c   request records: allocation, completion, keeping
 *   exec.c      the executor: checks each decision, submits its ops
 *   ring.c      the ring: setup, files, targets, owners, reaping, fallback
 *   uring.c     the core's own target: fixed-buffer io_uring ops on a file
 *
 * and for the instance: pins.c (the pin tree), loader.c (BPF objects).
 */
#ifndef BSTEER_CORE_ENGINE_H
#define BSTEER_CORE_ENGINE_H

#include "libbsteer.h"

#define BSTEER_SQ_ENTRIES	256
#define BSTEER_CQ_ENTRIES	4096	/* well above what can be in flight */

/*
 * The engine's own record of each lease. The copy in slot_meta is what BPF
 * and observers see; a policy can write that one, so checks use this.
 */
struct bsteer_slot_priv {
	__u32 owner;			/* request holding the lease */
	__u32 gen;
	__u32 inflight;			/* SQEs out on the slot */
	__u8 state;			/* enum bsteer_slot_state */
	__u8 dir;			/* BSTEER_DIR_* */
	__u16 piping;			/* io_uring SPLICEs into its pipe */
	bool owned;			/* a frontend's own (bsteer_slot_own) */
	bsteer_release_fn release;	/* lent buffer: who gets it back */
	void *release_arg;
	int pipe[2];			/* see bsteer_engine_splice; -1: none */
	__u32 pipe_fill;		/* bytes of its data in the pipe */
};

/* What the executor put in flight for (request, op). */
struct bsteer_op_priv {
	__u32 slot;
	__u16 target;
	__u8 frontend;
	__u8 opcode;
	__u32 slot_off;
	__u32 len;
	__u32 prefix;			/* headroom bytes before slot_off 0 */
	__s32 res;			/* what its completion returned */
	__u8 piped;			/* an io_uring SPLICE into the pipe */
	__u64 t0;			/* submitted at (target ops: latency) */
	struct __kernel_timespec wait;	/* BSTEER_OP_WAIT's timeout */
};

struct bsteer_engine_stats {
	__u64 executed;
	__u64 rejected;
	__u64 fallback;
	__u64 missing;
};

/* A target of this ring: the module that carries out ops on it. */
struct bsteer_tgt {
	const struct bsteer_target_ops *ops;
	void *priv;
	bool failed;		/* its fail hook ran for the flag now set */
};

struct bsteer_owner {
	const struct bsteer_owner_ops *ops;
	void *arg;
};

struct bsteer_engine {
	struct bsteer_instance *in;
	struct io_uring ring;
	bool ring_ok;
	__u32 id;
	struct bsteer_engine_opts opts;
	__u32 slot_base, slot_count;
	__u32 req_base, req_count;
	__u32 *req_stack;
	__u32 req_top;
	/* Private state, indexed from slot_base / req_base. */
	struct bsteer_slot_priv *slot;
	struct bsteer_op_priv *op;	/* req_count * BSTEER_REQ_OPS */
	__u8 *submitted;		/* per request: ops not yet answered */
	__u8 *req_state;		/* enum bsteer_req_state */
	__u8 *req_keep;			/* frontend still sends from it */
	__u8 *req_owner;		/* who started it (bsteer_engine_owner) */
	__u32 *req_slot;		/* the request's data lease */
	__u16 *req_issued;		/* policy ops submitted, ever */
	__u32 ntargets;
	struct bsteer_tgt tgt[BSTEER_MAX_TARGETS];
	struct bsteer_owner owner[BSTEER_OWNERS];
	__u32 nowners;
	__s8 parser_owner[BSTEER_FRONTEND_IDS];
	struct bsteer_cqe pending[BSTEER_BATCH];
	__u32 npending;
	__u64 inflight_sqes;
	int twin_fd;			/* active policy's syscall twin */
	__u32 twin_id;
	struct bsteer_engine_stats st;
	__u64 now_ns;			/* see bsteer_engine_now() */
	bool splice_reads;		/* see bsteer_engine_splice() */
};

/* pins.c, loader.c: for the instance */
int rm_tree(const char *path);
int pin_owner_alive(const char *dir);
int parsers_install(struct bsteer_instance *in, __u32 frontends);

/* pool.c */
static inline bool slot_mine(const struct bsteer_engine *e, __u32 slot)
{
	return slot >= e->slot_base && slot < e->slot_base + e->slot_count;
}

static inline struct bsteer_slot_priv *sp(struct bsteer_engine *e, __u32 slot)
{
	return &e->slot[slot - e->slot_base];
}

static inline struct bsteer_op_priv *opp(struct bsteer_engine *e, __u32 r,
					 __u32 op)
{
	return &e->op[(size_t)(r - e->req_base) * BSTEER_REQ_OPS + op];
}

void slot_push_free(struct bsteer_engine *e, __u32 slot);
void slot_returned(struct bsteer_engine *e, __u32 slot);
void pipe_drain(struct bsteer_slot_priv *p);
void pipes_close(struct bsteer_engine *e);

/* request.c */
void req_maybe_free(struct bsteer_engine *e, __u32 r);
void req_finish(struct bsteer_engine *e, __u32 r, int err);
const struct bsteer_owner *req_owner(struct bsteer_engine *e, __u32 r);

/* exec.c */
void execute(struct bsteer_engine *e, __u32 r, __u64 ud,
	     const struct bsteer_decision *shared);
void reject_pending_ops(struct bsteer_engine *e, __u32 r);

/* ring.c */
static inline bool target_op(const struct bsteer_engine *e,
			     const struct bsteer_op_priv *o)
{
	return !o->frontend && o->opcode != BSTEER_OP_WAIT &&
	       o->target < e->ntargets;
}

static inline const struct bsteer_target_ops *tgt_ops(const struct bsteer_engine *e,
						      __u32 t)
{
	return e->tgt[t].ops ? e->tgt[t].ops : &bsteer_uring_target;
}

#endif /* BSTEER_CORE_ENGINE_H */
