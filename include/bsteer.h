/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * bsteer ABI: the contract between the BPF programs and the userspace engine.
 *
 * Every structure here lives in a BPF map that both sides see; most of those
 * maps are BPF_F_MMAPABLE, so userspace reads and writes them in place. Only
 * fixed-width fields, explicit padding, and no vmlinux or libc includes. The
 * C side pins the sizes with _Static_assert (user/abi_check.c), so a change
 * here that moves a field breaks the build instead of the data.
 *
 * Ownership: each ring (and its slots and requests) belongs to one thread.
 * BPF hooks for that ring run inside that thread's io_uring_enter(), so the
 * engine and the hooks never touch the same ring state concurrently.
 */
#ifndef BSTEER_H
#define BSTEER_H

#ifndef __bpf__
#include <linux/types.h>
#endif

#define BSTEER_ABI_VERSION	2

/* Sizes. Changing one changes the ABI version. */
#define BSTEER_MAX_SLOTS	16384	/* io_uring's cap on registered buffers */
#define BSTEER_MAX_RINGS	64
#define BSTEER_MAX_TARGETS	16
#define BSTEER_MAX_REQS		16384	/* request records, all rings together */
#define BSTEER_REQ_OPS		8	/* ops one request may have in flight */
#define BSTEER_DEC_OPS		8	/* ops one decision may emit */
#define BSTEER_DEC_RELEASE	2	/* slots one decision may release */
#define BSTEER_OP_BUDGET	256	/* ops one request may issue, ever */
#define BSTEER_BATCH		64	/* completions per fallback run */
#define BSTEER_CFG_WORDS	16	/* policy configuration words */
#define BSTEER_POLICY_IDS	16	/* map "policy_stats": decisions by id */
#define BSTEER_NO_SLOT		0xffffffffu
/*
 * Map "slots" holds slot i at (slot_size + BSTEER_SLOT_HEADROOM) * i: the
 * headroom, then the slot_size bytes of data that ops address (slot_off 0
 * is the first data byte). Registered buffer i covers both, so a frontend
 * can put a reply header right before the data and send the two with one
 * op. Policies never see the headroom.
 */
#define BSTEER_SLOT_HEADROOM	4096u
#define BSTEER_OFF_STREAM	(~0ull)	/* offset of a pipe or socket */

/*
 * user_data of every SQE the engine submits:
 *   63..56 magic  55..32 request generation  31..29 op index
 *   28..21 op sequence  20..0 request index
 * A completion is ours only if the magic matches; a decision answers a
 * completion only if its cookie equals the completion's user_data.
 */
#define BSTEER_UD_MAGIC		0xb5ull
#define BSTEER_UD_REQ_BITS	21
#define BSTEER_UD_SEQ_SHIFT	21
#define BSTEER_UD_OP_SHIFT	29
#define BSTEER_UD_GEN_SHIFT	32
#define BSTEER_UD_MAGIC_SHIFT	56
#define BSTEER_GEN_MASK		0xffffffu

static inline __u64 bsteer_ud(__u32 req, __u32 gen, __u32 op, __u32 seq)
{
	return (BSTEER_UD_MAGIC << BSTEER_UD_MAGIC_SHIFT) |
	       ((__u64)(gen & BSTEER_GEN_MASK) << BSTEER_UD_GEN_SHIFT) |
	       ((__u64)(op & 7) << BSTEER_UD_OP_SHIFT) |
	       ((__u64)(seq & 0xff) << BSTEER_UD_SEQ_SHIFT) |
	       (req & ((1u << BSTEER_UD_REQ_BITS) - 1));
}
static inline int bsteer_ud_ours(__u64 ud)
{
	return (ud >> BSTEER_UD_MAGIC_SHIFT) == BSTEER_UD_MAGIC;
}
static inline __u32 bsteer_ud_req(__u64 ud)
{
	return ud & ((1u << BSTEER_UD_REQ_BITS) - 1);
}
static inline __u32 bsteer_ud_op(__u64 ud) { return (ud >> BSTEER_UD_OP_SHIFT) & 7; }
static inline __u32 bsteer_ud_seq(__u64 ud) { return (ud >> BSTEER_UD_SEQ_SHIFT) & 0xff; }
static inline __u32 bsteer_ud_gen(__u64 ud)
{
	return (ud >> BSTEER_UD_GEN_SHIFT) & BSTEER_GEN_MASK;
}

/* The "decisions" entry of request @req's op @op (struct bsteer_decision). */
static inline __u32 bsteer_dec_index(__u32 req, __u32 op)
{
	return req * BSTEER_REQ_OPS + op;
}

/*
 * Tags: the top byte of every user_data on a ring of ours says whose the
 * completion is. The hook decides on BSTEER_UD_REQ (an op of a request)
 * and parses BSTEER_UD_PARSE (a frontend header); the rest are
 * userspace's own and the hook leaves them alone: BSTEER_UD_OWNER, an SQE
 * of whoever started requests (a frontend, a copy), with its owner id in
 * the next byte; BSTEER_UD_TARGET, an SQE of a target module, with the
 * target index in the next byte; BSTEER_UD_ENGINE, the engine's own (its
 * cancels), whose completions nobody reads.
 */
enum bsteer_ud_tag {
	BSTEER_UD_REQ		= BSTEER_UD_MAGIC,	/* 0xb5 */
	BSTEER_UD_OWNER		= 0xb6,
	BSTEER_UD_PARSE		= 0xb7,
	BSTEER_UD_TARGET	= 0xb9,
	BSTEER_UD_ENGINE	= 0xba,
};

static inline __u32 bsteer_ud_tag(__u64 ud) { return ud >> 56; }

/* A tagged user_data: tag, an 8-bit id (owner or target), 48 bits of its own. */
static inline __u64 bsteer_ud_tagged(__u32 tag, __u32 id, __u64 low)
{
	return ((__u64)(tag & 0xff) << 56) | ((__u64)(id & 0xff) << 48) |
	       (low & 0xffffffffffffull);
}
static inline __u32 bsteer_ud_id(__u64 ud) { return (ud >> 48) & 0xff; }
static inline __u64 bsteer_ud_low(__u64 ud) { return ud & 0xffffffffffffull; }

/*
 * Frontend headers. A frontend receives each protocol header into entry
 * BSTEER_HDR(ring, conn) of map "fe_hdr", with user_data
 * bsteer_parse_ud(parser, ring, conn, seq). The completion hook sees that
 * tag and tail-calls parser @parser (map "parsers": one entry per
 * frontend, by its id), which writes the generic request into the same
 * entry of map "fe_req", stamped with the user_data. The frontend checks
 * the stamp and re-checks the fields.
 */
#define BSTEER_PARSE_MAGIC	BSTEER_UD_PARSE
#define BSTEER_FRONTEND_IDS	8	/* entries of "parsers"; frontend ids */
#define BSTEER_HDR_CONNS	2048	/* header entries per ring, shared out
					 * among its frontends */
#define BSTEER_HDR_SIZE		512	/* bytes per header entry */
/*
 * Counters a frontend keeps: map "fe_stats", BSTEER_FE_COUNTERS words per
 * frontend id. The first two are its parser's (headers parsed by the hook,
 * by the syscall twin); the frontend names the rest.
 */
#define BSTEER_FE_COUNTERS	32
#define BSTEER_FE_PARSED_HOOK	0
#define BSTEER_FE_PARSED_TWIN	1

static inline __u64 bsteer_parse_ud(__u32 parser, __u32 ring, __u32 conn,
				    __u32 seq)
{
	return ((__u64)BSTEER_PARSE_MAGIC << 56) | ((__u64)(parser & 0xff) << 48) |
	       ((__u64)(ring & 0xff) << 40) | ((__u64)(seq & 0xffffff) << 16) |
	       (conn & 0xffff);
}
static inline int bsteer_parse_ud_is(__u64 ud)
{
	return (ud >> 56) == BSTEER_PARSE_MAGIC;
}
static inline __u32 bsteer_parse_ud_parser(__u64 ud) { return (ud >> 48) & 0xff; }
static inline __u32 bsteer_parse_ud_ring(__u64 ud) { return (ud >> 40) & 0xff; }
static inline __u32 bsteer_parse_ud_conn(__u64 ud) { return ud & 0xffff; }
static inline __u32 bsteer_hdr_index(__u32 ring, __u32 conn)
{
	return ring * BSTEER_HDR_CONNS + (conn & (BSTEER_HDR_CONNS - 1));
}

/* A parsed request: map "fe_req". */
struct bsteer_blkreq {
	__u64 stamp;		/* user_data of the header completion */
	__u64 cookie;		/* the client's, opaque */
	__u64 offset;
	__u32 len;
	__s32 error;		/* 0, or -EINVAL/-EPROTO: what to answer */
	__u16 flags;		/* the protocol's command flags */
	__u16 cmd;		/* the protocol's command */
	__u8  type;		/* enum bsteer_req_type */
	__u8  payload;		/* a payload of len bytes follows */
	__u8  fatal;		/* the stream is broken: close it */
	__u8  pad0;
	__u32 pad1;
};

/* ctx of a parser's SEC("syscall") twin. */
struct bsteer_parse_args {
	__u64 user_data;
	__s32 res;
	__u32 pad0;
};

/*
 * Slot direction: what operations may do to the slot's bytes.
 * FILL:  a device writes into the slot (READ_FIXED, RECV).
 * DRAIN: a device reads from the slot (WRITE_FIXED, SEND).
 * A lease starts as FILL; sealing it turns it into DRAIN for good, so the
 * legs of a mirror can never see the payload change under them. A policy
 * asks for the seal in its decision; the executor applies it, and keeps
 * its own copy of every lease, so a policy cannot forge one in slot_meta.
 */
#define BSTEER_DIR_FILL		0x1
#define BSTEER_DIR_DRAIN	0x2

enum bsteer_slot_state {
	BSTEER_SLOT_FREE	= 0,
	BSTEER_SLOT_LEASED	= 1,	/* held by its owner */
	BSTEER_SLOT_RELEASING	= 2,	/* owner let go, ops still in flight */
	BSTEER_SLOT_OWNED	= 3,	/* a frontend's own, between its leases
					 * (a FUSE ring entry's payload, the
					 * kernel's to fill with the next request) */
};

#define BSTEER_SLOTF_OWNED	0x1	/* out of the free stack for good: a
					 * release returns it to its frontend */

/* Slot metadata: map "slot_meta", one entry per slot. */
struct bsteer_slot {
	__u32 state;		/* enum bsteer_slot_state */
	__u32 gen;		/* bumped on every lease */
	__u32 owner;		/* request index holding the lease */
	__u16 ring;		/* ring whose partition holds the slot */
	__u8  dir;		/* BSTEER_DIR_* allowed now */
	__u8  flags;		/* BSTEER_SLOTF_* */
	__u32 inflight;		/* ops submitted on the slot, not completed */
	__u32 kops;		/* fixed-buffer ops the kernel issued (audit) */
	__u64 lease_ns;		/* CLOCK_MONOTONIC time of the lease */
};

/* Generic block request types, what frontends turn their protocol into. */
enum bsteer_req_type {
	BSTEER_REQ_NONE		= 0,
	BSTEER_REQ_READ		= 1,
	BSTEER_REQ_WRITE	= 2,
	BSTEER_REQ_FLUSH	= 3,
	BSTEER_REQ_TRIM		= 4,
	BSTEER_REQ_WRITE_ZEROES	= 5,
	/*
	 * Copy [offset, offset + len) from a healthy leg to the legs being
	 * rebuilt (BSTEER_TGT_RESYNC), through the request's slot. A policy
	 * that tracks writes fails it with -EAGAIN if a client write touched
	 * the range meanwhile; `bsteer resync` then copies it again.
	 */
	BSTEER_REQ_RESYNC	= 6,
};

#define BSTEER_REQF_FUA		0x1
#define BSTEER_REQF_EXACT	0x2	/* a short payload is an error */
#define BSTEER_REQF_NO_HOLE	0x4	/* WRITE_ZEROES must not deallocate */

enum bsteer_req_state {
	BSTEER_RQ_FREE		= 0,
	BSTEER_RQ_ACTIVE	= 1,
	BSTEER_RQ_DONE		= 2,	/* completed; waits for late ops */
};

/* Operations a decision can ask for. The executor maps them to io_uring. */
enum bsteer_opcode {
	BSTEER_OP_NOP		= 0,	/* frontend: request arrival */
	BSTEER_OP_READ		= 1,	/* target -> slot (READ_FIXED) */
	BSTEER_OP_WRITE		= 2,	/* slot -> target (WRITE_FIXED) */
	BSTEER_OP_FSYNC		= 3,	/* flush target */
	BSTEER_OP_FDATASYNC	= 4,
	BSTEER_OP_PUNCH		= 5,	/* deallocate a range (reads as 0) */
	BSTEER_OP_ZERO		= 6,	/* zero a range, keeping it allocated */
	BSTEER_OP_WAIT		= 7,	/* complete (res 0) after len microseconds;
					 * no target, no slot: "ask me again" */
	BSTEER_OP__MAX,
};

#define BSTEER_WAIT_MAX_US	1000000	/* longest BSTEER_OP_WAIT */

/* Per-op flags (request op record and decision op). */
#define BSTEER_OPF_FRONTEND	0x1	/* issued by the frontend, not policy */
/*
 * A READ whose data only goes to the client in the reply, and nowhere
 * else: the executor may keep it out of the slot's memory (in a pipe
 * that the reply is spliced from), so no copy is made. The policy must
 * not use the slot's bytes afterwards.
 */
#define BSTEER_OPF_REPLY	0x2

enum bsteer_op_state {
	BSTEER_OPS_FREE		= 0,
	BSTEER_OPS_INFLIGHT	= 1,
};

/* One op of a request: the engine's record of what is in flight. */
struct bsteer_req_op {
	__u8  state;		/* enum bsteer_op_state */
	__u8  seq;		/* bumped on each (re)submission */
	__u8  opcode;		/* enum bsteer_opcode */
	__u8  flags;		/* BSTEER_OPF_* */
	__u16 target;
	__u16 pad0;
	__u32 slot;
	__u32 slot_off;
	__u32 len;		/* bytes asked for */
	__u32 done;		/* bytes moved so far (short IO) */
	__u64 offset;		/* target offset */
};

/* Request record: map "reqs", one entry per request index. */
struct bsteer_req {
	__u32 gen;		/* bumped on every allocation */
	__u8  state;		/* enum bsteer_req_state */
	__u8  type;		/* enum bsteer_req_type */
	__u16 ring;
	__u64 offset;		/* export offset */
	__u32 len;
	__u32 slot;		/* data slot, or BSTEER_NO_SLOT */
	__u16 inflight;		/* ops in flight: the join count */
	__u16 issued;		/* ops issued so far, against the budget */
	__s32 error;		/* first error the policy recorded */
	__u32 flags;		/* BSTEER_REQF_* */
	__u16 tbase;		/* the request's legs: targets */
	__u16 tcount;		/*   tbase .. tbase + tcount - 1 */
	__u64 start_ns;
	__u64 pstate[2];	/* policy scratch, zeroed on allocation */
	struct bsteer_req_op ops[BSTEER_REQ_OPS];
};

/* One op of a decision. */
struct bsteer_dop {
	__u8  opcode;		/* enum bsteer_opcode */
	__u8  op;		/* index in the request's ops[] */
	__u16 target;
	__u32 slot;
	__u32 slot_gen;		/* the lease this op was decided for */
	__u32 slot_off;
	__u32 len;
	__u32 flags;
	__u64 offset;
};

#define BSTEER_DEC_DONE		0x1	/* request complete; error = result */

/*
 * Decision: map "decisions", indexed by request * BSTEER_REQ_OPS + op, so
 * each completion has its own entry even when several of one request sit in
 * the CQ at once. Written by the policy, read and checked by the executor.
 */
struct bsteer_decision {
	__u64 cookie;		/* user_data of the completion it answers */
	__u8  nops;
	__u8  nrelease;
	__u8  flags;		/* BSTEER_DEC_* */
	__u8  pad0;
	__s32 error;		/* request result when DONE (0 or -errno) */
	__u32 release[BSTEER_DEC_RELEASE];
	__u32 seal;		/* slot to seal before the ops, or NO_SLOT */
	__u32 pad1;
	struct bsteer_dop ops[BSTEER_DEC_OPS];
};

#define BSTEER_TGT_FAILED	0x1
#define BSTEER_TGT_RDONLY	0x2
#define BSTEER_TGT_RESYNC	0x4	/* being rebuilt: takes writes, serves no reads */
/*
 * No leg in this place: a spare an export keeps for `bsteer leg add`, or a
 * leg removed. Always with BSTEER_TGT_FAILED, so a policy that knows only
 * that flag never reads or writes it.
 */
#define BSTEER_TGT_ABSENT	0x8

/*
 * A target's op latency, from the executor's submission to its reaping of
 * the completion, in log2 buckets of microseconds: lat[i] counts the ops
 * that took at most 2^i us (and more than 2^(i-1) us); the last bucket
 * counts everything slower. The executor keeps these; BPF does not touch
 * them.
 */
#define BSTEER_LAT_BUCKETS	24

/* Target descriptor and counters: map "targets". */
struct bsteer_target {
	__u32 flags;		/* BSTEER_TGT_* */
	__s32 last_error;
	__u64 size;		/* bytes, 0 if unknown */
	__u64 ops;		/* completed ops */
	__u64 bytes;
	__u64 errors;
	__u64 inflight;		/* ops out now; the executor keeps it */
	__u64 lat_sum_ns;	/* the latencies counted in lat[], summed */
	__u64 pad0;
	__u64 lat[BSTEER_LAT_BUCKETS];
};

/* Per-ring state: map "rings". */
struct bsteer_ring {
	__u32 owner_tid;	/* the only task that may run this ring */
	__u32 active;
	__u32 slot_base;	/* the ring's slot partition */
	__u32 slot_count;
	__u32 free_top;		/* entries on the free stack */
	__u32 req_base;		/* the ring's request partition */
	__u32 req_count;
	__u32 pad0;
	__u64 ctx;		/* io_ring_ctx, learnt at io_uring_create */
};

/* A completion handed to the fallback: map "batch". */
struct bsteer_cqe {
	__u64 user_data;
	__s32 res;
	__u32 flags;
};

/* ctx of the SEC("syscall") fallback programs. */
struct bsteer_fallback_args {
	__u32 ring;
	__u32 count;		/* entries in batch[ring * BSTEER_BATCH ...] */
	__u32 decided;		/* out: decisions written */
	__u32 pad0;
};

/*
 * Policy ids, so that "policy_stats" can say which policy made how many
 * decisions. Ids 8 and up are for test and out-of-tree policies.
 */
enum bsteer_policy_id {
	BSTEER_POL_NONE		= 0,
	BSTEER_POL_PASSTHROUGH	= 1,
	BSTEER_POL_MIRROR	= 2,	/* reads: primary, or per cfg */
	BSTEER_POL_STRIPE	= 3,
	BSTEER_POL_REDIRECT	= 4,
	BSTEER_POL_COW		= 5,
	BSTEER_POL_MIRROR_RR	= 6,	/* mirror, reads round-robin */
	BSTEER_POL_MIRROR_LIF	= 7,	/* mirror, reads least-in-flight */
};

/*
 * The redirect policy's table: map "redirect_table", a hash keyed by entry
 * number 0, 1, 2, ... (dense: the lookup stops at the first missing key).
 * Export bytes [start, start + len) live on leg @leg of the export at
 * @toff onwards. Replacing one entry is atomic for the policy.
 */
#define BSTEER_REDIRECT_MAX	64

struct bsteer_range {
	__u64 start;
	__u64 len;
	__u64 toff;
	__u32 leg;
	__u32 pad0;
};

/* Policy configuration: map "cfg", words defined by each policy. */
struct bsteer_cfg {
	__u32 ntargets;		/* targets 0..ntargets-1 are legs */
	__u32 policy_id;
	__u64 word[BSTEER_CFG_WORDS];
};

/* Instance identity: map "info", so a stale pin can be told from a live one. */
struct bsteer_info {
	__u32 abi;
	__u32 pid;
	__u64 start_time;	/* /proc/PID/stat field 22 of the owner */
	__u32 nslots;
	__u32 slot_size;
	__u32 nrings;
	__u32 legs;		/* the most legs of one export */
	char  policy[32];
	char  kind[16];		/* "copy", "serve" */
	char  layout[32];	/* data layout the targets hold (see policies) */
	__u32 frontends;	/* bit i: frontend id i serves (map "fe_stats") */
	__u32 pad0;
};

/* Stat counters: map "stats", array of __u64 indexed by this enum. */
enum bsteer_stat {
	BSTEER_ST_CQE_SEEN,		/* our completions seen by the hook */
	BSTEER_ST_CQE_AUX,		/* hook calls with no request */
	BSTEER_ST_DEC_HOOK,		/* decisions made in the completion hook */
	BSTEER_ST_DEC_FALLBACK,		/* decisions made by BPF_PROG_RUN */
	BSTEER_ST_FALLBACK_RUNS,
	BSTEER_ST_DEC_REJECTED,		/* decisions the executor refused */
	BSTEER_ST_DEC_STALE,		/* decision cookie did not match */
	BSTEER_ST_DEC_MISSING,		/* no decision even after fallback */
	BSTEER_ST_NO_POLICY,		/* tail call found no policy */
	BSTEER_ST_VIOLATIONS,		/* slot op at issue against the lease */
	BSTEER_ST_FOREIGN,		/* completion outside the owner task */
	BSTEER_ST_KOPS,			/* fixed-buffer ops seen at issue */
	BSTEER_ST_OPS_SUBMITTED,
	BSTEER_ST_OPS_COMPLETED,
	BSTEER_ST_OPS_SHORT,		/* short transfers resubmitted */
	BSTEER_ST_OPS_ERRORS,
	BSTEER_ST_SLOT_LEASES,
	BSTEER_ST_SLOT_RELEASES,
	BSTEER_ST_REQS_STARTED,
	BSTEER_ST_REQS_DONE,
	BSTEER_ST_REQS_FAILED,
	BSTEER_ST_BUDGET,		/* requests stopped by the op budget */
	BSTEER_ST_TARGETS_FAILED,
	BSTEER_ST_RINGS,		/* rings discovered at io_uring_create */
	BSTEER_ST_PARSED_HOOK,		/* headers parsed in the completion hook */
	BSTEER_ST_PARSED_FALLBACK,	/* ... by the parser's syscall twin */
	BSTEER_ST_INLINE_OPS,		/* target ops done by the ring's thread */
	BSTEER_ST_SPLICED_READS,	/* reads into a slot's pipe, not its memory */
	BSTEER_ST_POLICY_CHANGES,	/* active policy replaced, as a server saw it */
	BSTEER_ST_INLINE_WRITES,	/* writes to a punting file (ext4) done inline */
	BSTEER_ST_INLINE_SLOW,		/* ... that took the budget or longer: a back-off */
	BSTEER_ST_INLINE_BACKOFF,	/* writes sent to io-wq during a back-off */
	BSTEER_ST_KRECVS,		/* socket receives into a slot seen at issue */
	BSTEER_ST__MAX,
};

/* Ring buffer event: map "events". */
enum bsteer_event_kind {
	BSTEER_EV_VIOLATION	= 1,
	BSTEER_EV_TARGET_FAILED	= 2,
};

struct bsteer_event {
	__u64 ts_ns;
	__u64 user_data;
	__u32 kind;		/* enum bsteer_event_kind */
	__u32 ring;
	__u32 slot;		/* or target for TARGET_FAILED */
	__u8  opcode;		/* io_uring opcode */
	__u8  dir;		/* slot direction at the time */
	__u16 pad0;
	__s32 error;
	__u32 pad1;
};

#endif /* BSTEER_H */
