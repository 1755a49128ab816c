/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * libbsteer: the instance (loaded programs, pinned and mapped state), the
 * policy loader, and the per-thread engine that executes decisions.
 *
 * Functions return 0 or -errno; those that return a pointer take int *err.
 * Only the CLI prints. A failing function may leave a one-line reason in
 * bsteer_errbuf() for the CLI to show.
 */
#ifndef LIBBSTEER_H
#define LIBBSTEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <limits.h>
#include "compat.h"
#include "bsteer.h"

#define BSTEER_PIN_ROOT		"/sys/fs/bpf/bsteer"
#define BSTEER_NAME_MAX		32

/* Maps pinned for every instance, by name. Policies reuse them by name. */
enum bsteer_map_id {
	BSTEER_MAP_SLOTS,
	BSTEER_MAP_SLOT_META,
	BSTEER_MAP_SLOT_FREE,
	BSTEER_MAP_REQS,
	BSTEER_MAP_DECISIONS,
	BSTEER_MAP_TARGETS,
	BSTEER_MAP_RINGS,
	BSTEER_MAP_STATS,
	BSTEER_MAP_POLICY_STATS,
	BSTEER_MAP_BATCH,
	BSTEER_MAP_CFG,
	BSTEER_MAP_INFO,
	BSTEER_MAP_EVENTS,
	BSTEER_MAP_SCRATCH,
	BSTEER_MAP_POLICY,
	BSTEER_MAP_POLICY_SYS,
	BSTEER_MAP_RING_CTX,
	BSTEER_MAP_RING_CLAIM,
	BSTEER_MAP_FE_HDR,
	BSTEER_MAP_FE_REQ,
	BSTEER_MAP_PARSERS,
	BSTEER_MAP__MAX,
};

extern const char *const bsteer_map_names[BSTEER_MAP__MAX];

const char *bsteer_errbuf(void);
void bsteer_set_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A policy's configuration word, by name (map "cfg"). */
enum bsteer_cfg_kind {
	BSTEER_CFG_U64,
	BSTEER_CFG_SIZE,		/* bytes, a multiple of 4096 */
	BSTEER_CFG_ENUM,		/* one of names[] */
};

struct bsteer_cfg_key {
	const char *name;
	__u32 word;			/* index in cfg.word[] */
	enum bsteer_cfg_kind kind;
	bool fixed;			/* part of the layout: set at start only */
	const char *const *names;	/* BSTEER_CFG_ENUM */
	__u64 def;			/* what 0 means to the policy */
	const char *help;
};

#define BSTEER_PF_TABLE		0x1	/* steered by "redirect_table" */
#define BSTEER_PF_BASE_RDONLY	0x2	/* leg 0 is never written */
#define BSTEER_PF_NO_ZEROES	0x4	/* no WRITE_ZEROES */

/* Policies built into the binary (user/policies.c). */
struct bsteer_policy_desc {
	const char *name;
	const char *summary;
	__u32 id;			/* enum bsteer_policy_id */
	const void *(*elf_bytes)(size_t *sz);
	const struct bsteer_cfg_key *keys;
	__u32 min_legs, max_legs;
	/* Export size from the legs' sizes under this layout. */
	__u64 (*export_size)(const struct bsteer_cfg *cfg, const __u64 *sizes,
			     __u32 n);
	__u32 flags;			/* BSTEER_PF_* */
};
extern const struct bsteer_policy_desc bsteer_policies[];
const struct bsteer_policy_desc *bsteer_policy_find(const char *name);
const struct bsteer_cfg_key *bsteer_cfg_key_find(const struct bsteer_policy_desc *d,
						 const char *key);
int bsteer_cfg_parse(const struct bsteer_cfg_key *k, const char *val, __u64 *out);
void bsteer_cfg_format(const struct bsteer_cfg_key *k, __u64 v, char *out,
		       size_t len);
/*
 * The data layout a policy (built-in name or .bpf.o path) declares with
 * BSTEER_LAYOUT(); "" if it declares none.
 */
int bsteer_policy_layout(const char *spec, char *out, size_t len);
/*
 * Apply one KEY=VALUE setting to a policy's cfg words (or, "map.N=RANGE",
 * "map.N=-", to the redirect table @table_fd). @live refuses changes to
 * keys that fix the data layout. "word.N=V" sets a raw word.
 */
int bsteer_policy_setting(const struct bsteer_policy_desc *d,
			  struct bsteer_cfg *cfg, int table_fd, const char *kv,
			  bool live);
/* Redirect ranges as text: START+LEN@LEG:OFFSET. */
int bsteer_range_parse(const char *s, struct bsteer_range *r);
void bsteer_range_format(const struct bsteer_range *r, char *out, size_t len);
__u32 bsteer_table_count(int fd);
/* The layout as an instance records it, given its most legs per export. */
void bsteer_layout_norm(char *layout, size_t len, __u32 legs);

struct bsteer_instance_opts {
	const char *name;
	const char *kind;		/* "copy", "serve" */
	const char *policy;		/* built-in name or path to a .bpf.o */
	__u32 nslots;
	__u32 slot_size;
	__u32 nrings;
	__u32 nreqs;
	__u32 ntargets;
	__u32 legs;			/* most legs of one export (layout) */
	bool no_complete_hook;		/* leave the completion hook detached */
	bool verbose;
};

struct core_bpf;
struct ring_buffer;

struct bsteer_instance {
	char name[BSTEER_NAME_MAX + 1];
	char dir[PATH_MAX];
	struct core_bpf *skel;
	struct ring_buffer *events;
	int map_fd[BSTEER_MAP__MAX];
	__u32 nslots;
	__u32 slot_size;
	__u32 nrings;
	__u32 nreqs;
	bool pinned;
	/* Map memory, shared with the BPF programs. */
	unsigned char *pool;		/* see BSTEER_SLOT_HEADROOM */
	struct bsteer_slot *meta;
	__u32 *freelist;
	struct bsteer_req *reqs;
	struct bsteer_decision *decs;
	struct bsteer_target *targets;
	struct bsteer_ring *rings;
	__u64 *stats;
	__u64 *policy_stats;
	struct bsteer_cqe *batch;
	struct bsteer_cfg *cfg;
	struct bsteer_info *info;
	unsigned char *fe_hdr;		/* BSTEER_HDR_SIZE per entry */
	struct bsteer_blkreq *fe_req;
	int parser_sys_fd[1];		/* twins, by BSTEER_PARSER_* */
	size_t map_len[BSTEER_MAP__MAX];
	void *map_mem[BSTEER_MAP__MAX];
};

/* The first data byte of @slot (its headroom is the bytes just before). */
static inline unsigned char *bsteer_slot_data(const struct bsteer_instance *in,
					      __u32 slot)
{
	return in->pool + (size_t)slot * (in->slot_size + BSTEER_SLOT_HEADROOM) +
	       BSTEER_SLOT_HEADROOM;
}

/* Route libbpf's messages: all of them with @verbose, else warnings to errbuf. */
void bsteer_libbpf_setup(bool verbose);
/* The live instance owned by process @pid: 0 and its name, or -ENOENT. */
int bsteer_instance_of_pid(int pid, char *name, size_t len);
int bsteer_ensure_bpffs(void);
int bsteer_name_valid(const char *name);
/* 0, or -EPERM after telling @who which capabilities it lacks. */
int bsteer_check_privileges(const char *who);
struct bsteer_instance *bsteer_instance_open(const struct bsteer_instance_opts *o,
					     int *err);
void bsteer_instance_close(struct bsteer_instance *in);

/* Maps of a running instance, opened from its pins (for stat, policy). */
struct bsteer_pins {
	char dir[PATH_MAX];
	int map_fd[BSTEER_MAP__MAX];
};
int bsteer_pins_open(struct bsteer_pins *p, const char *name);
void bsteer_pins_close(struct bsteer_pins *p);
void *bsteer_map_mmap(int fd, size_t *len, bool writable);

/*
 * Load a policy (built-in name, or path to a .bpf.o) against the maps in
 * @map_fd, pin its programs under @dir/progs/<name>/ and make it active.
 */
int bsteer_policy_install(const char *dir, const int *map_fd, const char *spec,
			  bool verbose);
/* The two halves: load and pin only; make a pinned one active. */
int bsteer_policy_load(const char *dir, const int *map_fd, const char *spec,
		       bool verbose);
int bsteer_policy_activate(const char *dir, const int *map_fd, const char *name);
/* The program in entry 0 of a prog array: name and id ("(none)", 0). */
int bsteer_prog_in_array(int map_fd, char *out, size_t len, __u32 *id);
/* The active policy's name, from the hook program's name (NAME_tp). */
int bsteer_active_policy(int policy_map_fd, char *out, size_t len);
/*
 * Parse a frontend header with the parser's syscall twin, when the hook did
 * not (fe_req's stamp is not @ud). Returns 0 or -errno.
 */
int bsteer_parse_fallback(struct bsteer_instance *in, __u64 ud, __s32 res);
/* Name of a policy spec ("mirror", or the file's base name without .bpf.o). */
void bsteer_policy_name(const char *spec, char *out, size_t len);

/* ---- engine: one ring, one thread ---- */

struct bsteer_engine;

struct bsteer_frontend_cb {
	/*
	 * The policy finished a request: err is 0 or -errno; req->len holds
	 * the payload. Runs before the request's lease is released, so it
	 * may still send from the slot (bsteer_frontend_op).
	 */
	void (*complete)(void *arg, struct bsteer_engine *e, __u32 req, int err);
	/* A frontend op is over (res: its last completion's result). */
	void (*frontend_done)(void *arg, struct bsteer_engine *e, __u32 req,
			      __u32 op, int res);
	/* A completion of an SQE the frontend wrote itself. */
	void (*cqe)(void *arg, struct bsteer_engine *e,
		    const struct io_uring_cqe *cqe);
	void *arg;
};

/* Called once a lent (foreign) buffer is back: released and no op holds it. */
typedef void (*bsteer_release_fn)(void *arg, __u32 slot);

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
	bsteer_release_fn release;	/* lent buffer: who gets it back */
	void *release_arg;
	int pipe[2];			/* see splice_reads; -1: none */
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
	struct __kernel_timespec wait;	/* BSTEER_OP_WAIT's timeout */
};

struct bsteer_engine_stats {
	__u64 executed;
	__u64 rejected;
	__u64 fallback;
	__u64 missing;
};

struct bsteer_engine {
	struct bsteer_instance *in;
	struct io_uring ring;
	bool ring_ok;
	__u32 id;
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
	__u32 *req_slot;		/* the request's data lease */
	__u16 *req_issued;		/* policy ops submitted, ever */
	__u32 ntargets;
	struct bsteer_frontend_cb cb;
	struct bsteer_cqe pending[BSTEER_BATCH];
	__u32 npending;
	__u64 inflight_sqes;
	int twin_fd;			/* active policy's syscall twin */
	__u32 twin_id;
	bool verbose;
	struct bsteer_engine_stats st;
	struct bsteer_upstreams *up;	/* NBD upstream targets, or NULL */
	/*
	 * CLOCK_MONOTONIC when the last wait returned: what the requests of
	 * one batch are stamped with (one clock read per batch, not four
	 * per request).
	 */
	__u64 now_ns;
	/*
	 * Inline targets (set inline_io before bsteer_engine_files): a
	 * target file that io_uring cannot do I/O on without a worker thread
	 * (no FMODE_NOWAIT: tmpfs, for one) is served by this thread itself.
	 * A policy op on it is the plain syscall (pread() into the slot for
	 * reads of up to 64 KiB; pwrite() from it, fsync, fallocate), done at
	 * once; then a NOP posts the result under the op's user_data, and the
	 * hook and the policy see the op complete as ever. No io-wq, no
	 * context switch, the same one copy.
	 */
	bool inline_io;
	int inl_fd[BSTEER_MAX_TARGETS];	/* -1: io_uring does its I/O */
	/*
	 * Also (set with inline_io, before the files): a one-leg WRITE of up
	 * to 64 KiB to a file whose buffered writes io_uring would punt
	 * (ext4) is a pwrite() here. Such a write can sleep on the journal or
	 * on dirty-page throttling, and the ring's other clients wait with
	 * it: the caller's choice.
	 */
	bool inline_writes;
	int inl_wr_fd[BSTEER_MAX_TARGETS];	/* -1: not so */
	/*
	 * Spliced reads (bsteer_engine_splice): each slot also has a pipe.
	 * A policy READ longer than BSTEER_SPLICE_ABOVE marked
	 * BSTEER_OPF_REPLY is spliced from the target's page cache into the
	 * pipe instead of being copied into the slot, and the frontend
	 * splices the pipe into its socket: the server copies nothing.
	 */
	bool splice_reads;
};

int bsteer_engine_init(struct bsteer_engine *e, struct bsteer_instance *in,
		       __u32 ring_id, const struct bsteer_frontend_cb *cb);
/* Is target @t served inline (see inline_io)? */
static inline bool bsteer_engine_inline(const struct bsteer_engine *e, __u32 t)
{
	return t < BSTEER_MAX_TARGETS && e->inl_fd[t] >= 0;
}
void bsteer_engine_fini(struct bsteer_engine *e);
/*
 * Files: targets[0..ntargets) are legs; frontend files (sources, client
 * sockets) follow at BSTEER_FRONTEND_FILE(k), k < BSTEER_FRONTEND_FILES.
 */
#define BSTEER_FRONTEND_FILES	1024
#define BSTEER_FRONTEND_FILE(k)	(BSTEER_MAX_TARGETS + (k))
int bsteer_engine_files(struct bsteer_engine *e, const int *targets,
			__u32 ntargets, const int *frontend, __u32 nfrontend);
/*
 * An upstream target: target @target's file is @fd, a connection to an NBD
 * server past its handshake (user/be_nbd.c). Ops on it become NBD requests
 * on this ring. Call after bsteer_engine_files(); again, with a new
 * connection, once the old one has failed and has nothing in flight.
 */
struct bsteer_nbd_info {
	__u64 size;
	__u16 flags;		/* NBD transmission flags */
	__u32 min_block;	/* 0 if the server did not say */
	__u32 max_block;
	/* Set by the caller: no progress this long with requests out fails
	 * the connection (0: 30 s). */
	__u32 timeout_ms;
};
int bsteer_engine_upstream(struct bsteer_engine *e, __u32 target, int fd,
			   const struct bsteer_nbd_info *info);
/* Is target @target's upstream connection still up? */
bool bsteer_engine_upstream_alive(const struct bsteer_engine *e, __u32 target);
/* Put @fd in place of target @t's file (a leg opened again). */
int bsteer_engine_target_file(struct bsteer_engine *e, __u32 t, int fd);
/* Put @fd (or -1 to clear) at frontend file @k. */
int bsteer_engine_frontend_file(struct bsteer_engine *e, __u32 k, int fd);
/* Make room for @n SQEs, so the next @n are written without a submit. */
void bsteer_engine_reserve(struct bsteer_engine *e, unsigned n);
/* Which targets a request's policy may use (default: all of them). */
int bsteer_req_set_legs(struct bsteer_engine *e, __u32 req, __u32 base,
			__u32 count);

int bsteer_req_alloc(struct bsteer_engine *e, __u8 type, __u64 offset,
		     __u32 len, __u32 *req);
/*
 * From the complete callback: keep the request and its lease after the
 * policy finished it (to send a reply from the slot). bsteer_req_put()
 * lets both go.
 */
void bsteer_req_keep(struct bsteer_engine *e, __u32 req);
void bsteer_req_put(struct bsteer_engine *e, __u32 req);
/* Give back a request that never started an op. */
void bsteer_req_abandon(struct bsteer_engine *e, __u32 req);
int bsteer_slot_lease(struct bsteer_engine *e, __u32 req, __u32 *slot);
/*
 * Give every slot of the ring a pipe that holds a slot's worth, and turn
 * spliced reads on (see splice_reads). 0, or -errno (then they stay off).
 */
#define BSTEER_SPLICE_ABOVE	(64u << 10)
int bsteer_engine_splice(struct bsteer_engine *e);
/*
 * The pipe holding @slot's data, or -1 if its data is in the slot. @len
 * gets how many bytes the pipe holds. bsteer_slot_pipe_sent(): the
 * frontend spliced @len of them out.
 */
int bsteer_slot_pipe(struct bsteer_engine *e, __u32 slot, __u32 *len);
void bsteer_slot_pipe_sent(struct bsteer_engine *e, __u32 slot, __u32 len);
/*
 * Lease a slot whose memory a device lends (a ublk or AF_XDP frontend):
 * @fn runs once the owner released it and its last op completed, before
 * the slot can be leased again.
 */
int bsteer_slot_lend(struct bsteer_engine *e, __u32 req, bsteer_release_fn fn,
		     void *arg, __u32 *slot);
void bsteer_slot_release(struct bsteer_engine *e, __u32 slot);
__u32 bsteer_slots_free(struct bsteer_engine *e);
__u32 bsteer_reqs_free(struct bsteer_engine *e);
/* Start the frontend's op of a request (payload receive, or arrival NOP). */
int bsteer_frontend_op(struct bsteer_engine *e, __u32 req, __u8 opcode,
		       __u32 file, __u32 slot, __u32 len, __u64 offset);
/*
 * The same, with the next SQE the caller prepares linked behind it
 * (IOSQE_IO_LINK): that one starts only once the op is done, and is
 * cancelled (-ECANCELED) if the op fails or comes up short (its rest then
 * goes out alone, as ever). Reserve both SQEs first: a submission in
 * between would cut the link.
 */
int bsteer_frontend_op_linked(struct bsteer_engine *e, __u32 req, __u8 opcode,
			      __u32 file, __u32 slot, __u32 len, __u64 offset);
/*
 * Send @prefix bytes the frontend wrote into @slot's headroom, right before
 * its data, and then @len bytes of data, as one stream write to @file.
 * -EINVAL if the prefix does not fit the headroom or the two the slot.
 */
int bsteer_frontend_send_prefixed(struct bsteer_engine *e, __u32 req,
				  __u32 file, __u32 slot, __u32 prefix,
				  __u32 len);
/* Submit, wait for @wait_nr completions, execute every decision. */
int bsteer_engine_run(struct bsteer_engine *e, unsigned wait_nr);
/* The same, waiting at most @timeout_ms (-1: no limit). */
int bsteer_engine_run_timeout(struct bsteer_engine *e, unsigned wait_nr,
			      int timeout_ms);
/* Ops in flight on this ring (SQEs submitted, CQEs not yet reaped). */
static inline __u64 bsteer_engine_busy(const struct bsteer_engine *e)
{
	return e->inflight_sqes;
}
void bsteer_stat_add(struct bsteer_instance *in, enum bsteer_stat s, __u64 v);
__u32 bsteer_slots_leaked(struct bsteer_engine *e);

/* ---- small utilities ---- */
__u64 bsteer_now_ns(void);
int bsteer_parse_size(const char *s, __u64 *out);
void bsteer_human_bytes(double b, char *out, size_t len);
int bsteer_proc_start_time(int pid, __u64 *out);

struct bsteer_json {
	FILE *f;
	int depth;
	bool first[16];
};
void json_begin(struct bsteer_json *j, FILE *f);
void json_obj(struct bsteer_json *j, const char *key);
void json_arr(struct bsteer_json *j, const char *key);
void json_end_obj(struct bsteer_json *j);
void json_end_arr(struct bsteer_json *j);
void json_u64(struct bsteer_json *j, const char *key, unsigned long long v);
void json_i64(struct bsteer_json *j, const char *key, long long v);
void json_dbl(struct bsteer_json *j, const char *key, double v);
void json_str(struct bsteer_json *j, const char *key, const char *v);
void json_bool(struct bsteer_json *j, const char *key, bool v);
void json_finish(struct bsteer_json *j);

/* Log2 histograms, printed the way libbpf-tools print them. */
#define BSTEER_HIST_SLOTS	48
unsigned int bsteer_log2_slot(__u64 v);
void bsteer_print_log2_hist(FILE *f, const __u64 *slots, const char *unit);
/* @key: [{"lo":..,"hi":..,"count":..}, ...] for the non-empty slots. */
void json_hist(struct bsteer_json *j, const char *key, const __u64 *slots);

#endif /* LIBBSTEER_H */
