/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * libbsteer, the public API: what frontends, targets, policies' userspace
 * halves and the command line may use. The core (user/core/) implements
 * it and names no protocol; modules plug in through the ops tables and
 * registries below. Engine internals are in core/engine.h, for the core
 * alone.
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
#include <linux/falloc.h>
#include "compat.h"
#include "bsteer.h"

#define BSTEER_PIN_ROOT		"/sys/fs/bpf/bsteer"
#define BSTEER_NAME_MAX		32

/* ---- errors, time, numbers, JSON, histograms ---- */

const char *bsteer_errbuf(void);
void bsteer_set_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
__u64 bsteer_now_ns(void);
int bsteer_parse_size(const char *s, __u64 *out);
void bsteer_human_bytes(double b, char *out, size_t len);
int bsteer_proc_start_time(int pid, __u64 *out);
/* 0, or -EPERM after telling @who which capabilities it lacks. */
int bsteer_check_privileges(const char *who);
/* Is @sa an IPv4 127/8 or the IPv6 ::1 address? (--allow-remote rules) */
struct sockaddr;
bool bsteer_addr_loopback(const struct sockaddr *sa);
/*
 * The on-disk copy of BPF object NAME.bpf.o (a built-in policy, for
 * bpftool): ../lib/bsteer/ next to the running binary (installed), else
 * bpf/ next to it (the build tree). 0 with its real path in @out, or
 * -ENOENT with both places named in bsteer_errbuf().
 */
int bsteer_bpf_object_path(const char *name, char *out, size_t len);

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

/* ---- the instance: loaded programs, pinned and mapped state ---- */

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
	BSTEER_MAP_FE_STATS,
	BSTEER_MAP_PARSERS,
	BSTEER_MAP__MAX,
};

extern const char *const bsteer_map_names[BSTEER_MAP__MAX];

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
	__u32 frontends;		/* bit i: frontend id i, whose parser to install */
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
	/* What claiming the pins did worth a log line (a stale XDP program detached). */
	char note[256];
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
	__u64 *fe_stats;		/* BSTEER_FE_COUNTERS per frontend id */
	int parser_sys_fd[BSTEER_FRONTEND_IDS];	/* the parsers' twins */
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

/* The header area of frontend connection @conn on ring @ring (fe_hdr). */
static inline unsigned char *bsteer_hdr(const struct bsteer_instance *in,
					__u32 ring, __u32 conn)
{
	return in->fe_hdr + (size_t)BSTEER_HDR_SIZE * bsteer_hdr_index(ring, conn);
}

void bsteer_stat_add(struct bsteer_instance *in, enum bsteer_stat s, __u64 v);

/* Route libbpf's messages: all of them with @verbose, else warnings to errbuf. */
void bsteer_libbpf_setup(bool verbose);
/* The live instance owned by process @pid: 0 and its name, or -ENOENT. */
int bsteer_instance_of_pid(int pid, char *name, size_t len);
int bsteer_ensure_bpffs(void);
int bsteer_name_valid(const char *name);
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

/* One instance under BSTEER_PIN_ROOT, alive or left behind (bsteer list). */
struct bsteer_instance_status {
	char name[BSTEER_NAME_MAX + 1];
	bool has_info;		/* its "info" map was there and read */
	struct bsteer_info info;
	int live_pid;		/* its owner, still running; 0: gone */
};
/* Instance @name: 0, or -ENOENT (nothing pinned) / -EINVAL (bad name). */
int bsteer_instance_status(const char *name, struct bsteer_instance_status *st);
/* Every instance, up to @max of them, by name: how many, or -errno. */
int bsteer_instances(struct bsteer_instance_status *out, int max);
/*
 * Remove the pins of instance @name if its owner is gone: 0, -EBUSY when
 * it is alive (never touched), -ENOENT, or the error of the removal.
 */
int bsteer_instance_clean(const char *name);
/*
 * The staging directories (+PID+NAME) of starts whose process died before
 * their pins moved to NAME: each removed (unless @dry) and given to @each;
 * how many.
 */
int bsteer_staging_clean(bool dry, void (*each)(const char *dir, int pid, void *arg),
			 void *arg);
void *bsteer_map_mmap(int fd, size_t *len, bool writable);

/*
 * Parse a frontend header with its parser's syscall twin, when the hook did
 * not (fe_req's stamp is not @ud). Returns 0 or -errno.
 */
int bsteer_parse_fallback(struct bsteer_instance *in, __u64 ud, __s32 res);

/* ---- policies: the loader, and the built-in policies' descriptors ---- */

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

#define BSTEER_PF_BASE_RDONLY	0x1	/* leg 0 is never written */
#define BSTEER_PF_NO_ZEROES	0x2	/* no WRITE_ZEROES */
#define BSTEER_PF_REPLICAS	0x4	/* every leg holds the whole export */

struct bsteer_export;
struct bsteer_policy_run;

/*
 * A policy built into the binary: its BPF object, its settings, its layout
 * rules, and its userspace half (the hooks, all optional), so that the
 * server names no policy. user/policy/registry.c lists them.
 */
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
	/*
	 * An export's KEY=VALUE that is not a cfg key (map=, cowmap=):
	 * 0 taken, -ENOENT not this policy's, or -errno with a reason.
	 */
	int (*option)(struct bsteer_policy_run *p, const struct bsteer_export *ex,
		      const char *kv);
	/*
	 * bsteer policy config on a running instance: KEY=VALUE of a key of
	 * its own (-ENOENT: not one), and showing those (@j NULL: as text).
	 */
	int (*config)(struct bsteer_pins *pins, const char *key, const char *val);
	void (*config_show)(struct bsteer_pins *pins, struct bsteer_json *j);
	/* Before its legs open (@ex's fds are -1), and once they have. */
	int (*legs_prepare)(struct bsteer_policy_run *p, struct bsteer_export *ex);
	int (*legs_opened)(struct bsteer_policy_run *p, struct bsteer_export *ex,
			   __u64 *sizes);
	/* The instance exists: fill the policy's maps from its settings. */
	int (*setup)(struct bsteer_policy_run *p, struct bsteer_instance *in,
		     struct bsteer_export *exports, int nexports);
	/* A FLUSH or FUA write finished: make the policy's own state stable. */
	int (*sync)(struct bsteer_policy_run *p);
	void (*close)(struct bsteer_policy_run *p);
};

/* A policy as a server runs it: the exports' settings, and its own state. */
struct bsteer_policy_run {
	const char *name;		/* built-in name, or a .bpf.o path */
	const struct bsteer_policy_desc *d;	/* NULL: a .bpf.o file */
	struct bsteer_cfg cfg;
	__u64 size;			/* the export's size if set, 0: the legs' */
	__u32 legs;			/* most legs of one export */
	__u32 slot_size;		/* the instance's */
	void *priv;			/* the userspace half's own */
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
 * Apply one KEY=VALUE setting to a policy's cfg words. @live refuses
 * changes to keys that fix the data layout. "word.N=V" sets a raw word.
 */
int bsteer_policy_setting(const struct bsteer_policy_desc *d,
			  struct bsteer_cfg *cfg, const char *kv, bool live);
/* The layout as an instance records it, given its most legs per export. */
void bsteer_layout_norm(char *layout, size_t len, __u32 legs);

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
/* Name of a policy spec ("mirror", or the file's base name without .bpf.o). */
void bsteer_policy_name(const char *spec, char *out, size_t len);

/* ---- the engine: one ring, one thread ---- */

struct bsteer_engine;

struct bsteer_engine_opts {
	bool verbose;
	/*
	 * Inline I/O: a target file that io_uring cannot do I/O on without
	 * a worker thread (no FMODE_NOWAIT: tmpfs) is served by the ring's
	 * own thread; with inline_writes, also small one-leg writes to a
	 * file whose buffered writes io_uring would punt (ext4), always.
	 * With inline_budget instead, those writes are inline while they
	 * are fast: one that takes inline_budget_us or longer (0: every
	 * one) sends the target's writes back to io-wq for a while. The
	 * file target reads these when it attaches.
	 */
	bool inline_io;
	bool inline_writes;
	bool inline_budget;
	__u32 inline_budget_us;
	/* Remote targets: no progress this long with ops out fails them. */
	__u32 target_timeout_ms;
	/* 128-byte SQEs (a FUSE frontend's uring_cmds need them). */
	bool sqe128;
};

struct bsteer_engine *bsteer_engine_new(struct bsteer_instance *in,
					__u32 ring, const struct bsteer_engine_opts *o,
					int *err);
void bsteer_engine_free(struct bsteer_engine *e);
struct bsteer_instance *bsteer_engine_instance(const struct bsteer_engine *e);
const struct bsteer_engine_opts *bsteer_engine_opts(const struct bsteer_engine *e);
__u32 bsteer_engine_ring(const struct bsteer_engine *e);
/* This ring's share of the slots, and of the request records. */
__u32 bsteer_engine_slots(const struct bsteer_engine *e);
__u32 bsteer_engine_reqs(const struct bsteer_engine *e);
/* Request @req's place in this ring's share, 0 .. bsteer_engine_reqs() - 1. */
__u32 bsteer_engine_req_index(const struct bsteer_engine *e, __u32 req);
/* Ops per ring (requests times BSTEER_REQ_OPS), and an op's place among them. */
__u32 bsteer_engine_nops(const struct bsteer_engine *e);
/* The op index of completion @ud of ours on this ring, or -1. */
int bsteer_engine_op_of(const struct bsteer_engine *e, __u64 ud);
/*
 * CLOCK_MONOTONIC when the last wait returned: what the requests of one
 * batch are stamped with (one clock read per batch).
 */
__u64 bsteer_engine_now(const struct bsteer_engine *e);

/*
 * The one way to get an SQE: the next free one, after submitting what is
 * queued if the queue is full. NULL only if even that fails.
 */
struct io_uring_sqe *bsteer_engine_sqe(struct bsteer_engine *e);
/* Make room for @n SQEs, so that the next @n go in without a submit. */
void bsteer_engine_reserve(struct bsteer_engine *e, unsigned n);

/*
 * Owners: whoever starts requests (a frontend, a copy, a rebuild, the
 * final flush). The engine tells the owner of a request how it ended,
 * and hands it the completions of its own SQEs: those it tagged with
 * bsteer_owner_ud(), and the header receives of the parser it claims.
 */
struct bsteer_owner_ops {
	/*
	 * The policy finished a request: err is 0 or -errno; req->len holds
	 * the payload. Runs before the request's lease is released, so it
	 * may still send from the slot (bsteer_frontend_op).
	 */
	void (*complete)(void *arg, __u32 req, int err);
	/* A frontend op is over (res: its last completion's result). */
	void (*op_done)(void *arg, __u32 req, __u32 op, int res);
	/* A completion of one of its own SQEs. */
	void (*cqe)(void *arg, const struct io_uring_cqe *cqe);
	/* Its requests' data may be spliced into a slot's pipe (see below). */
	bool pipes;
};

#define BSTEER_OWNERS		16
/* Register an owner: its id (>= 0), or -ENOSPC. */
int bsteer_engine_owner(struct bsteer_engine *e, const struct bsteer_owner_ops *ops,
			void *arg);
/* Header receives tagged for parser @parser go to owner @owner. */
int bsteer_engine_owner_parser(struct bsteer_engine *e, int owner, __u32 parser);
static inline __u64 bsteer_owner_ud(int owner, __u64 low)
{
	return bsteer_ud_tagged(BSTEER_UD_OWNER, owner, low);
}

/*
 * Files: targets[0..ntargets) are legs; frontend files (sources, client
 * sockets) follow at BSTEER_FRONTEND_FILE(k), k < BSTEER_FRONTEND_FILES.
 * A target with no module attached is a plain file that io_uring reads
 * and writes (bsteer_uring_target).
 */
#define BSTEER_FRONTEND_FILES	1024
#define BSTEER_FRONTEND_FILE(k)	(BSTEER_MAX_TARGETS + (k))
int bsteer_engine_files(struct bsteer_engine *e, const int *targets,
			__u32 ntargets, const int *frontend, __u32 nfrontend);
/* Put @fd in place of target @t's file (a leg opened again). */
int bsteer_engine_target_file(struct bsteer_engine *e, __u32 t, int fd);
/*
 * Cancel every SQE on the ring on file @fd (a fixed file's index if
 * @fixed); done when it returns. 0 or -errno.
 */
int bsteer_engine_cancel_fd(struct bsteer_engine *e, int fd, bool fixed);
/*
 * Cancel what target @t's module left on the ring: every SQE on its fixed
 * file, on @fd (a plain file it polls; -1: none), and what its cancel hook
 * names. Before it detaches, with the ring running.
 */
int bsteer_engine_target_cancel(struct bsteer_engine *e, __u32 t, int fd);
/* Put @fd (or -1 to clear) at frontend file @k. */
int bsteer_engine_frontend_file(struct bsteer_engine *e, __u32 k, int fd);
/* Which targets a request's policy may use (default: all of them). */
int bsteer_req_set_legs(struct bsteer_engine *e, __u32 req, __u32 base,
			__u32 count);

int bsteer_req_alloc(struct bsteer_engine *e, int owner, __u8 type,
		     __u64 offset, __u32 len, __u32 *req);
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
 * spliced reads on: a policy READ longer than BSTEER_SPLICE_ABOVE marked
 * BSTEER_OPF_REPLY, on a target that can splice, goes from the page cache
 * into the pipe instead of the slot, and the frontend splices the pipe
 * into its socket. 0, or -errno (then they stay off).
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
 * Lease a slot with a callback: @fn runs once the owner released it and
 * its last op completed, before the slot can be leased again.
 */
typedef void (*bsteer_release_fn)(void *arg, __u32 slot);
int bsteer_slot_lend(struct bsteer_engine *e, __u32 req, bsteer_release_fn fn,
		     void *arg, __u32 *slot);
/*
 * A slot of the frontend's own, out of the free stack for the engine's
 * life: memory a device fills by itself (a FUSE ring entry's payload).
 * Each request on it leases it with bsteer_slot_lease_owned(); when that
 * lease is released and its last op completed, @fn runs and the slot is
 * the frontend's again (BSTEER_SLOT_OWNED), not free.
 */
int bsteer_slot_own(struct bsteer_engine *e, __u32 *slot);
int bsteer_slot_lease_owned(struct bsteer_engine *e, __u32 req, __u32 slot,
			    bsteer_release_fn fn, void *arg);
void bsteer_slot_release(struct bsteer_engine *e, __u32 slot);
__u32 bsteer_slots_free(struct bsteer_engine *e);
__u32 bsteer_reqs_free(struct bsteer_engine *e);
__u32 bsteer_slots_leaked(struct bsteer_engine *e);
/*
 * Start the frontend's op of a request: a payload receive (READ of @len
 * from @file into @slot), or the arrival NOP that brings a request to the
 * policy: for one whose payload is in its slot already (a FUSE WRITE),
 * @len is the payload's length, the result the policy sees.
 */
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
 * A payload receive from socket @file into @slot: one RECV with
 * MSG_WAITALL, which the kernel retries until all @len bytes are in, so it
 * comes back short only when the peer leaves or errs (its rest then goes
 * out as a READ, as above). @link: as bsteer_frontend_op_linked(). It uses
 * the slot's address, not its registration, so the issue hook's fixed-buffer
 * audit (and the tracer) do not see it; the executor's checks still apply.
 */
int bsteer_frontend_recv(struct bsteer_engine *e, __u32 req, __u32 file,
			 __u32 slot, __u32 len, bool link);
/*
 * Send @prefix bytes the frontend wrote into @slot's headroom, right before
 * its data, and then @len bytes of data, as one stream write to @file.
 * -EINVAL if the prefix does not fit the headroom or the two the slot.
 */
int bsteer_frontend_send_prefixed(struct bsteer_engine *e, __u32 req,
				  __u32 file, __u32 slot, __u32 prefix,
				  __u32 len);
/*
 * A frontend op the frontend carries out itself, with no SQE of the
 * engine's: READ fills @len bytes of @slot, WRITE sends @prefix bytes of
 * headroom and @len of data from it (a TLS record layer in userspace
 * decrypting into the slot, encrypting from it). It is recorded as the
 * ops above are, and *@ud gets its user_data: the frontend posts its
 * completion with bsteer_target_complete(e, *ud, res) exactly once, with
 * res = prefix + len once all is done (a short result would be taken for
 * a short transfer, its rest asked of the socket), or 0 or -errno. The
 * hooks then see it as they see a plain receive's or send's.
 */
int bsteer_frontend_op_own(struct bsteer_engine *e, __u32 req, __u8 opcode,
			   __u32 file, __u32 slot, __u32 prefix, __u32 len,
			   __u64 *ud);
/* Submit, wait for @wait_nr completions, execute every decision. */
int bsteer_engine_run(struct bsteer_engine *e, unsigned wait_nr);
/* The same, waiting at most @timeout_ms (-1: no limit). */
int bsteer_engine_run_timeout(struct bsteer_engine *e, unsigned wait_nr,
			      int timeout_ms);
/* Ops in flight on this ring (SQEs submitted, CQEs not yet reaped). */
__u64 bsteer_engine_busy(const struct bsteer_engine *e);

/* ---- targets: modules that carry out the policy's ops on a leg ---- */

/* Hints the executor gives a target about an op's decision. */
#define BSTEER_TIO_LEGS		0x1	/* one of several writes */
#define BSTEER_TIO_FANOUT	0x2	/* one of several writes over BIG */
#define BSTEER_TIO_BIG		(64u << 10)

/* One op a policy sent to a target, for its module to carry out. */
struct bsteer_target_io {
	__u64 ud;		/* complete the op with a CQE of this user_data */
	void *buf;		/* the slot's bytes at the op (READ, WRITE), or NULL */
	__u32 slot;		/* the fixed buffer, or BSTEER_NO_SLOT */
	__u32 len;
	__u64 offset;
	__u32 op;		/* the op's index (see bsteer_engine_nops) */
	__u8 opcode;		/* BSTEER_OP_READ .. BSTEER_OP_ZERO */
	__u8 hints;		/* BSTEER_TIO_* */
	__u16 pad0;
};

/* A leg as the server opened it, once, before the workers start. */
struct bsteer_leg {
	const char *spec;
	const struct bsteer_target_ops *ops;
	int fd;			/* the main thread's file or connection */
	__u64 size;
	bool rdonly;
	__u32 min_block;	/* the alignment it needs: 0 or 1, none */
	__u32 pref_block;	/* the alignment it serves best (0: any) */
	bool direct;		/* cache=none: bypass the host's page cache */
	__u32 timeout_ms;	/* --upstream-timeout, for modules whose ops can hang (0: theirs) */
	void *priv;		/* the module's, from open(); freed by close() */
};

/*
 * A target module (the way kublk's targets are): the engine hands it the
 * ops a policy sends to its target, and the completions of the SQEs it
 * tagged with bsteer_target_ud(), and never names it. Every hook but
 * match and open is optional.
 */
struct bsteer_target_ops {
	const char *name;
	/* Does this module take the target spec? */
	bool (*match)(const char *spec);
	/*
	 * Main thread, at start: open the target, or connect and shake
	 * hands. Fills leg->fd, leg->size, leg->priv; 0, or -errno with the
	 * reason in bsteer_errbuf().
	 */
	int (*open)(struct bsteer_leg *leg);
	void (*close)(struct bsteer_leg *leg);
	/*
	 * On a worker's thread, its ring ready: take target @t of engine @e.
	 * @leg is the worker's (its fd registered as fixed file @t). It may
	 * hand the target to another face of itself (bsteer_target_use).
	 */
	int (*attach)(struct bsteer_engine *e, __u32 t, const struct bsteer_leg *leg);
	/* Carry out @io: write its SQEs, or do it and post its CQE. */
	int (*submit)(struct bsteer_engine *e, __u32 t, const struct bsteer_target_io *io);
	/* A READ into @pipe (the slot's, see bsteer_engine_splice). */
	int (*splice)(struct bsteer_engine *e, __u32 t, const struct bsteer_target_io *io,
		      int pipe);
	void (*cqe)(struct bsteer_engine *e, __u32 t, const struct io_uring_cqe *cqe);
	/* Before each submit: write queued SQEs; fail what hangs. */
	void (*kick)(struct bsteer_engine *e, __u32 t);
	/* Ops that only a timeout would end (the engine then wakes up). */
	__u32 (*waiting)(struct bsteer_engine *e, __u32 t);
	/*
	 * A leg that failed: give target @t a new file or connection, of at
	 * least @want bytes (bsteer resync). *@own_fd: what to close at exit.
	 */
	int (*reopen)(struct bsteer_engine *e, __u32 t, const struct bsteer_leg *leg,
		      __u64 want, int *own_fd);
	/* How it is served, in a sentence for -v (NULL: nothing to say). */
	const char *(*about)(struct bsteer_engine *e, __u32 t);
	/*
	 * The policy marked the target failed: let go of what holds the
	 * other end (a connection), so that it can stop and start again.
	 */
	void (*fail)(struct bsteer_engine *e, __u32 t);
	/* Is the target's connection still up? (NULL: always.) */
	bool (*alive)(struct bsteer_engine *e, __u32 t);
	/*
	 * The leg goes while the ring runs (bsteer leg remove): cancel its
	 * SQEs on files other than its fixed file and leg->fd, which the
	 * engine cancels itself (bsteer_engine_cancel_fd), before detach.
	 */
	void (*cancel)(struct bsteer_engine *e, __u32 t);
	void (*detach)(struct bsteer_engine *e, __u32 t);
	/* Each worker opens its own (a connection per ring). */
	bool per_worker;
};

/* user/target/registry.c: every target module, first match wins. */
extern const struct bsteer_target_ops *const bsteer_target_modules[];
const struct bsteer_target_ops *bsteer_target_for(const char *spec);

/*
 * The core's own target: a file io_uring reads and writes with fixed
 * buffers (READ_FIXED, WRITE_FIXED, fsync, fallocate, SPLICE). Modules
 * hand it what they do not do themselves.
 */
extern const struct bsteer_target_ops bsteer_uring_target;
/* Attach @ops to target @t (after bsteer_engine_files). */
int bsteer_engine_attach(struct bsteer_engine *e, __u32 t,
			 const struct bsteer_target_ops *ops,
			 const struct bsteer_leg *leg);
/* Switch target @t to @ops, keeping its file (a module picking a variant). */
void bsteer_target_use(struct bsteer_engine *e, __u32 t,
		       const struct bsteer_target_ops *ops);
void *bsteer_target_priv(struct bsteer_engine *e, __u32 t);
void bsteer_target_set_priv(struct bsteer_engine *e, __u32 t, void *priv);
const struct bsteer_target_ops *bsteer_target_ops_of(struct bsteer_engine *e,
						     __u32 t);
static inline __u64 bsteer_target_ud(__u32 t, __u64 low)
{
	return bsteer_ud_tagged(BSTEER_UD_TARGET, t, low);
}
/* Post @io's completion with @res now (a NOP with an injected result). */
int bsteer_target_complete(struct bsteer_engine *e, __u64 ud, int res);

/* fallocate()'s mode for BSTEER_OP_PUNCH and BSTEER_OP_ZERO. */
static inline int bsteer_falloc_mode(__u8 opcode)
{
	return FALLOC_FL_KEEP_SIZE | (opcode == BSTEER_OP_PUNCH ?
				      FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE);
}

/* ---- the server: exports, frontends, workers ---- */

#define BSTEER_MAX_EXPORTS	8

struct bsteer_export {
	char name[64];
	char description[128];
	struct bsteer_leg leg[BSTEER_MAX_TARGETS];
	__u32 ntargets;
	__u32 tbase;		/* first of its targets in the instance */
	bool rdonly;
	bool no_zeroes;		/* the policy cannot do WRITE_ZEROES */
	bool no_extents;	/* leg 0 is not the export: all data */
	bool resync_auto;	/* resync=auto: failed legs rebuilt unasked */
	bool direct;		/* cache=none: legs opened past the page cache */
	char policy[64];
	char *opts[16];		/* KEY=VALUE settings for the policy */
	__u32 nopts;
	__u64 size;
	__u32 part_max;		/* request bytes per slot, 0: the slot size */
};

struct bsteer_server;
struct bsteer_fe;

/*
 * A frontend module: turns a protocol into generic block requests. Found
 * by name in user/frontend/registry.c; its place there is its id (its
 * parser's slot in "parsers", its counters in "fe_stats").
 */
struct bsteer_frontend_ops {
	const char *name;
	/* Its BPF header parser: the object's bytes (a skeleton's), or NULL. */
	const void *(*parser)(size_t *sz);
	/* Its counters' names, in "fe_stats" after the parser's two; NULL ends. */
	const char *const *counters;
	/* Header entries it uses per ring (see bsteer_fe.hdr_base). */
	__u32 hdr_entries;
	/* Its READ replies may be spliced from a slot's pipe (a socket's). */
	bool pipes;
	/* Its uring_cmds need 128-byte SQEs. */
	bool sqe128;
	/* Main thread, before anything is made: is all it needs there? */
	int (*check)(struct bsteer_fe *fe);
	/* Main thread, once: what the workers share (sockets, a mount). */
	int (*setup)(struct bsteer_fe *fe);
	void (*teardown)(struct bsteer_fe *fe);
	/* Main thread: every worker has started (say where it serves). */
	void (*ready)(struct bsteer_fe *fe);
	/* Main thread, once the server stops, its workers still serving. */
	void (*quiesce)(struct bsteer_fe *fe);
	/* Per worker, on its own thread, its engine ready: start serving. */
	int (*start)(struct bsteer_fe *fe);
	void (*cqe)(struct bsteer_fe *fe, const struct io_uring_cqe *cqe);
	void (*complete)(struct bsteer_fe *fe, __u32 req, int err);
	void (*op_done)(struct bsteer_fe *fe, __u32 req, __u32 op, int res);
	/* After every turn of the event loop. */
	void (*tick)(struct bsteer_fe *fe);
	/* Stop taking requests; close what is idle. */
	void (*stop)(struct bsteer_fe *fe);
	/* Nothing left in flight: the server may exit. */
	bool (*idle)(struct bsteer_fe *fe);
	void (*fini)(struct bsteer_fe *fe);
};

/* A frontend in a server: the main thread's, copied to every worker. */
struct bsteer_fe {
	const struct bsteer_frontend_ops *ops;
	struct bsteer_server *s;	/* the worker (or the main thread's) */
	__u32 id;			/* its registry index */
	int owner;			/* its owner id in the worker's engine */
	int owner_nopipe;		/* ... for requests whose replies are never spliced */
	__u32 hdr_base;			/* its first header entry per ring */
	const void *conf;		/* its options, as the CLI set them */
	void *shared;			/* from setup() */
	void *priv;			/* the worker's, from start() */
};

/* user/frontend/registry.c: every frontend module, NULL-terminated. */
extern const struct bsteer_frontend_ops *const bsteer_frontend_modules[];
const struct bsteer_frontend_ops *bsteer_frontend_find(const char *name);
/* A frontend's id (registry index), or -1. */
int bsteer_frontend_id(const struct bsteer_frontend_ops *ops);
/* Its counter @i (after the parser's two): add @v. */
void bsteer_fe_count(struct bsteer_fe *fe, __u32 i, __u64 v);

#define BSTEER_SERVER_FRONTENDS	4

/*
 * One per worker thread: its engine and frontends' state, with a copy of
 * the server's configuration.
 */
enum bsteer_server_state {
	BSTEER_SERVER_READY,
	BSTEER_SERVER_STOPPING,
};

struct bsteer_server {
	struct bsteer_engine *e;
	__u32 ring;		/* this worker's ring */
	int status;		/* the worker's result */
	struct bsteer_instance *in;
	struct bsteer_fe fe[BSTEER_SERVER_FRONTENDS];
	int nfe;
	struct bsteer_export exports[BSTEER_MAX_EXPORTS];
	int nexports;
	__u32 ntargets;		/* every export's legs, in order */
	struct bsteer_policy_run *policy;
	struct bsteer_access *access;	/* admission rules, or NULL */
	int resync_fd;		/* the pinned "resync" map, or -1 */
	int exports_fd;		/* the pinned "exports" map, or -1 */
	int legreq_fd;		/* the pinned "leg_request" map, or -1 */
	int legspec_fd;		/* the pinned "leg_specs" map, or -1 */
	struct bsteer_resync_job *rs;	/* worker 0's leg rebuild */
	struct bsteer_leg_job *lj;	/* worker 0's leg add or remove */
	struct bsteer_leg *legs;	/* the worker's own legs, by target */
	struct bsteer_server *main;	/* the main thread's (its legs close last) */
	int flush_owner;	/* the final flush's engine owner */
	struct bsteer_engine_opts eo;
	bool no_splice;		/* --splice off */
	bool json_log;
	bool verbose;
	bool quiet;		/* no log lines (the fuzzer) */
	/* Told when every worker serves, and when stopping begins (sd_notify). */
	void (*notify)(struct bsteer_server *s, enum bsteer_server_state state);
};

/*
 * ---- admission: who may connect (user/core/access.c) ----
 *
 * --allow/--deny CIDR rules for TCP listeners (nbdkit's precedence: an
 * allow match admits, else a deny match refuses, else admitted), enforced
 * by an XDP program on the listening addresses' interfaces and always
 * checked again at accept(); --allow-uid/--allow-gid for unix sockets
 * (SO_PEERCRED at accept); --max-connections. The rules live in maps
 * pinned as access_* under the instance (include/bsteer_access.h).
 */
#define BSTEER_ACCESS_CLI_RULES	64
#define BSTEER_ACCESS_IDS	16	/* uids, gids */
#define BSTEER_ACCESS_DEVS	8
#define BSTEER_ACCESS_LISTEN	16

enum bsteer_xdp_mode {
	BSTEER_XDP_AUTO = 0,	/* XDP if it can attach, else accept() alone */
	BSTEER_XDP_REQUIRE,	/* refuse to start without it */
	BSTEER_XDP_OFF,
};

struct bsteer_access_rule {
	__u8 family;		/* AF_INET or AF_INET6 */
	__u8 deny;
	__u8 plen;		/* prefix length */
	__u8 addr[16];
};

/* A TCP client's source address, for --max-per-source (family 0: none). */
struct bsteer_access_peer {
	__u8 family;
	__u8 addr[16];
};

struct bsteer_access_src;

struct bsteer_access {
	/* The options. */
	struct bsteer_access_rule rule[BSTEER_ACCESS_CLI_RULES];
	int nrules;
	__u32 uid[BSTEER_ACCESS_IDS], gid[BSTEER_ACCESS_IDS];
	int nuid, ngid;
	__u32 max_conns;	/* 0: no limit */
	__u32 max_per_source;	/* 0: no limit */
	enum bsteer_xdp_mode xdp;
	bool xdp_replace;	/* replace another's XDP program (--xdp-replace) */
	const char *xdp_dev[BSTEER_ACCESS_DEVS];
	int nxdp_dev;
	/* Running: the rule maps (-1 if none), the attached devices. */
	void *skel;
	int fd_allow4, fd_deny4, fd_allow6, fd_deny6;
	void *xprog[BSTEER_ACCESS_DEVS];
	int ifindex[BSTEER_ACCESS_DEVS];
	int nif;
	__u32 conns;		/* open connections (atomic) */
	__u64 *stats;		/* access_stats, mapped (enum bsteer_access_stat) */
	size_t stats_len;
	struct bsteer_access_src **src;	/* open connections per source */
};

/* "CIDR" (IPv4 or IPv6; a bare address is /32 or /128) into @r. */
int bsteer_access_parse(const char *cidr, bool deny, struct bsteer_access_rule *r);
/*
 * The rules in maps pinned under @s's instance, and the XDP program on the
 * interfaces of the TCP listening sockets @lfd (unix ones are skipped),
 * as s->access->xdp says. A no-op without s->access.
 */
int bsteer_access_listen(struct bsteer_server *s, const int *lfd, int n);
/*
 * A connection just accepted on @fd: 0 to serve it (it then counts toward
 * --max-connections and, by its source address kept in @peer, toward
 * --max-per-source until bsteer_access_release(@peer)), or -EACCES /
 * -EUSERS (logged and counted) for the caller to close it at once.
 */
int bsteer_access_admit(struct bsteer_server *s, int fd, struct bsteer_access_peer *peer);
void bsteer_access_release(struct bsteer_server *s, struct bsteer_access_peer *peer);
/*
 * The XDP programs a dead instance pinned at @dir left attached
 * (access_xdp_IFINDEX pins, still the program on that interface):
 * detached, and said in @msg. Any other program is left alone. Returns
 * how many were detached.
 */
int bsteer_access_detach_stale(const char *dir, char *msg, size_t len);
/* Detach the XDP program and close the maps (the pins go with the instance). */
void bsteer_access_close(struct bsteer_server *s);

struct bsteer_export *bsteer_export_find(struct bsteer_server *s, const char *name);
/* NAME=TARGET[,TARGET...][,ro][,policy=P][,KEY=VALUE]; @spec is kept. */
int bsteer_export_parse(struct bsteer_server *s, char *spec);
/* The policy the exports ask for and its settings; then open every leg. */
int bsteer_server_policy(struct bsteer_server *s, struct bsteer_policy_run *p,
			 __u64 slot_size);
int bsteer_server_open_legs(struct bsteer_server *s);
void bsteer_server_close_legs(struct bsteer_server *s);
/*
 * Run the server: instance @io (its sizes set by the caller), the
 * frontends' setup, @threads workers until SIGINT/SIGTERM (*@stop), then
 * drain, the final flush, and every frontend's teardown. The return is
 * the exit status: 0, or 1 with the reason logged.
 */
int bsteer_server_run(struct bsteer_server *s, struct bsteer_instance_opts *io,
		      __u32 threads, volatile int *stop);

/*
 * A leg rebuild of a running server: map "resync" (one entry), pinned by
 * bsteer serve (userspace only: no BPF program sees it). `bsteer resync` writes a request (state REQUESTED, a new
 * seq, the export and leg); the server answers in the same entry with its
 * progress. Only userspace reads and writes it.
 */
enum bsteer_resync_state {
	BSTEER_RS_IDLE		= 0,
	BSTEER_RS_REQUESTED	= 1,
	BSTEER_RS_RUNNING	= 2,
	BSTEER_RS_DONE		= 3,
	BSTEER_RS_FAILED	= 4,
};

struct bsteer_resync {
	__u32 state;		/* enum bsteer_resync_state */
	__u32 seq;		/* the request this answers */
	__u32 leg;		/* leg index within the export */
	__s32 error;		/* -errno when FAILED */
	__u64 done;		/* bytes copied */
	__u64 total;		/* the export's size */
	__u64 recopied;		/* chunks copied again after a client write */
	__u64 start_ns;		/* CLOCK_MONOTONIC */
	__u64 end_ns;
	char  export[64];
	char  message[64];	/* why it failed */
	__u32 attempts;		/* resync=auto: tries of this leg so far */
	__u32 automatic;	/* resync=auto started it, not a request */
	__u64 next_try_ns;	/* resync=auto, after a failure: CLOCK_MONOTONIC */
};

/*
 * The exports of a server, as bsteer stat shows them: map "exports"
 * (BSTEER_MAX_EXPORTS entries), pinned by bsteer serve. Userspace only.
 */
struct bsteer_export_info {
	char name[64];
	__u64 size;
	__u32 tbase;		/* its legs: targets tbase .. tbase + ntargets - 1 */
	__u32 ntargets;
	__u32 flags;		/* BSTEER_EXF_* */
	__u32 pad0;
	char device[64];	/* a block device a frontend made of it, or "" */
};

#define BSTEER_EXF_USED		0x1
#define BSTEER_EXF_RDONLY	0x2
#define BSTEER_EXF_DIRECT	0x4	/* cache=none: its file legs are O_DIRECT */

/* Export @k is (also) block device @path: for bsteer stat. */
void bsteer_server_export_device(struct bsteer_server *s, int k, const char *path);

/*
 * One log line on stderr: "bsteer serve: MESSAGE", or with --json-log one
 * JSON object per line, {"ts":"2026-12-03T17:30:01.123456Z" (RFC 3339,
 * UTC, microseconds), "level":"info"|"warn"|"error", "instance":NAME
 * (once the instance exists), "worker":N, "msg":MESSAGE}.
 */
enum bsteer_log_level {
	BSTEER_LOG_ERROR,
	BSTEER_LOG_WARN,
	BSTEER_LOG_INFO,
};
void serve_logl(struct bsteer_server *s, enum bsteer_log_level level,
		const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define serve_log(s, ...)	serve_logl(s, BSTEER_LOG_INFO, __VA_ARGS__)
#define serve_warn(s, ...)	serve_logl(s, BSTEER_LOG_WARN, __VA_ARGS__)
#define serve_err(s, ...)	serve_logl(s, BSTEER_LOG_ERROR, __VA_ARGS__)

/* Leg rebuilds (bsteer resync): worker 0 drives them from its loop. */
int resync_pin(struct bsteer_server *s);
void resync_tick(struct bsteer_server *s, bool stopping);
void resync_fini(struct bsteer_server *s);
/* No rebuild running, and none with copies still out: one may start. */
bool resync_quiet(struct bsteer_server *s);
/* Is a rebuild running (on target @t; BSTEER_NO_SLOT: on any)? */
bool resync_running(struct bsteer_server *s, __u32 t);
/*
 * Rebuild leg @leg of @ex, just opened on every worker (bsteer leg add
 * --resync): no reopening. *@seq: the job's seq in map "resync".
 */
int resync_start_fresh(struct bsteer_server *s, struct bsteer_export *ex,
		       __u32 leg, __u32 *seq);
/* The rebuild of target @t, if one runs, ends: the leg is going. */
void resync_cancel(struct bsteer_server *s, __u32 t);
/* This worker let go of target @t: a file reopened for it closes too. */
void resync_forget(struct bsteer_server *s, __u32 t);

/*
 * Rounds: worker 0 asks every other worker to do something to target @t
 * on its own ring (only that ring's thread may), and waits for them all.
 * One at a time: round_begin() is -EBUSY while another is out.
 */
enum bsteer_round_kind {
	BSTEER_ROUND_REOPEN,	/* a failed leg: a fresh file or connection */
	BSTEER_ROUND_ADD,	/* a new leg: attach it */
	BSTEER_ROUND_REMOVE,	/* a removed leg: let it go */
};
int round_begin(struct bsteer_server *s, enum bsteer_round_kind kind, __u32 t,
		__u64 want);
bool round_busy(void);
/* 1 once every worker answered (*@err, @why: the first failure), else 0. */
int round_poll(struct bsteer_server *s, int *err, char *why, size_t len);

/*
 * Legs added and removed on a running server (bsteer leg): map
 * "leg_request" (one entry), pinned by bsteer serve, works as "resync"
 * does: the CLI writes a request, worker 0 answers in the same entry.
 * Map "leg_specs" (BSTEER_MAX_TARGETS entries) says what each target
 * holds, for bsteer stat. Userspace only.
 */
enum bsteer_leg_op {
	BSTEER_LEG_ADD		= 1,
	BSTEER_LEG_REMOVE	= 2,
};

#define BSTEER_LEG_SPEC_MAX	512

struct bsteer_leg_request {
	__u32 state;		/* enum bsteer_resync_state */
	__u32 seq;
	__u32 op;		/* enum bsteer_leg_op */
	__u32 leg;		/* remove: the leg; add: the place it got */
	__s32 error;		/* -errno when FAILED */
	__u32 resync;		/* add: rebuild it from the others */
	__u32 resync_seq;	/* add --resync: the rebuild's seq in "resync" */
	__u32 target;		/* the leg's target index */
	char  export[64];
	char  message[BSTEER_LEG_SPEC_MAX + 256];	/* why it failed */
	char  spec[BSTEER_LEG_SPEC_MAX];	/* add: the target */
};

struct bsteer_leg_spec {
	char spec[BSTEER_LEG_SPEC_MAX];	/* "" while absent */
};

/* Spare places per replica export, for legs added later (room allowing). */
#define BSTEER_LEG_SPARES	2

int legs_pin(struct bsteer_server *s);
void legs_tick(struct bsteer_server *s, bool stopping);
void legs_fini(struct bsteer_server *s);
/* The main thread, once every leg is closed: what the added ones kept. */
void legs_free_specs(void);
/* A worker's part of a round: attach target @t's new leg, or let it go. */
int legs_attach_mine(struct bsteer_server *s, __u32 t, const char **why);
void legs_detach_mine(struct bsteer_server *s, __u32 t);
/*
 * The first leg of @ex in service (not failed, absent or being rebuilt),
 * for what only a leg that holds the export can say: its index, or -1.
 */
int bsteer_export_first_leg(const struct bsteer_instance *in,
			    const struct bsteer_export *ex);

/* ---- bsteer copy, the job (user/core/copy.c) ---- */

/*
 * A copy of @src_fd (registered as frontend file 0) to the engine's
 * targets, through the policy. The caller fills the settings, runs it,
 * and reads the result fields.
 */
struct bsteer_copy {
	/* Settings. */
	struct bsteer_engine *e;
	struct bsteer_instance *in;
	bool stream;		/* SRC has no size: read in order until EOF */
	__u64 size;		/* bytes to copy (regular file or device) */
	__u32 slot_size;
	volatile int *stop;	/* set (by a signal): stop starting chunks */
	/* Called now and then (and once at the end, @final) while it runs. */
	void (*progress)(const struct bsteer_copy *c, bool final);
	void *arg;
	/* Results. */
	__u64 done_bytes;
	int error;		/* first failed chunk, or the stall's -EIO */
	bool stalled;		/* nothing in flight and nothing could start */
	__u64 t0;		/* when it started */
	/* The job's own. */
	int owner;
	__u64 next_off;
	bool eof, flushed;
	__u32 stream_req;	/* request whose read is outstanding */
	bool stream_busy;
	__u64 t_last;
};

/* 0 once the copy ran its course (c->error says how), or -errno. */
int bsteer_copy_run(struct bsteer_copy *c, bool fsync_end);

#endif /* LIBBSTEER_H */
