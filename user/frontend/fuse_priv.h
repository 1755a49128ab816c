/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The FUSE frontend's insides, shared by its files:
 *
 *   fuse_mount.c   the main thread's part: the checks, a stale mount of
 *                  ours found and removed, /dev/fuse, the mount, INIT,
 *                  the loop devices, and taking it all down again
 *   fuse_ring.c    a worker's part: ring entries (one slot each) on the
 *                  queues of its CPUs, requests handed to the engine, the
 *                  commits, the /dev/fuse reader (worker 0)
 *   fuse_answer.c  what the frontend answers itself: LOOKUP, GETATTR,
 *                  OPEN, READDIR, STATFS, ...
 *
 * The transport (FUSE over io_uring, Linux 6.14+): each ring entry is a
 * uring_cmd (REGISTER, then COMMIT_AND_FETCH) on /dev/fuse with a header
 * area (struct fuse_uring_req_header, in map "fe_hdr", where the BPF
 * parser reads it) and a payload (a slot the entry owns). The uring_cmd
 * completes when the kernel has put a request in the entry; the commit of
 * the reply fetches the next one. There is one queue per possible CPU,
 * and a request goes to the queue of the CPU its caller runs on.
 */
#ifndef BSTEER_FRONTEND_FUSE_PRIV_H
#define BSTEER_FRONTEND_FUSE_PRIV_H

#include <sys/uio.h>
#include "frontend/fuse.h"

#define FUSE_ROOT		1	/* the root directory's node */
#define FUSE_NODE(k)		(2 + (k))	/* export k's file */
#define FUSE_MAX_ENTRIES	1024	/* header entries per ring */
#define FUSE_MAX_WRITE		(1u << 20)	/* FUSE caps pages at 256 */
#define FUSE_DEV_BUF		(FUSE_MAX_WRITE + 4096)

/* Its counters (bsteer stat shows them by these names). */
enum {
	FUSE_C_REQUESTS,	/* requests delivered */
	FUSE_C_READS,
	FUSE_C_WRITES,
	FUSE_C_FLUSHES,
	FUSE_C_DISCARDS,
	FUSE_C_ZEROES,
	FUSE_C_OTHER,		/* answered by the frontend itself */
	FUSE_C_ERRORS,		/* replies carrying an error */
	FUSE_C_BYTES_READ,
	FUSE_C_BYTES_WRITTEN,
};

/* A loop device on an export's file. */
struct fuse_loop {
	int fd;			/* /dev/loopN, held open; -1: none */
	int nr;
	char path[32];
};

/* What the main thread sets up, for every worker. */
struct fuse_shared {
	int fd;			/* /dev/fuse */
	char dir[PATH_MAX];
	bool mounted;
	bool ring;		/* the io_uring transport (not /dev/fuse) */
	__u32 nqueues;		/* possible CPUs */
	__u32 max_write;
	__u64 mount_time;	/* files' times */
	struct fuse_loop loop[BSTEER_MAX_EXPORTS];
};

enum fent_state {
	FENT_KERNEL,		/* waiting in the kernel for a request */
	FENT_BUSY,		/* holds a request: in the engine or answered */
	FENT_WAITING,		/* holds a request no record was free for */
	FENT_DEAD,		/* its uring_cmd ended (unmount, abort) */
};

struct fusew;

/* One ring entry (or, with the dev transport, one request read). */
struct fent {
	struct fusew *w;
	__u32 idx;		/* in the worker's entries */
	__u16 qid;
	__u8 state;		/* enum fent_state */
	__u8 opcode;		/* the request's */
	__u32 slot;		/* its payload, owned for good */
	__u32 seq;		/* stamps its uring_cmds */
	__u32 req;		/* the bsteer request, or BSTEER_NO_SLOT */
	__u64 unique;		/* the request's, for the reply */
	__u64 commit_id;
	__u32 len;		/* data bytes (READ, WRITE) */
	int err;		/* the request's result */
	bool done;		/* the policy finished the request */
	bool released;		/* ... and the slot's last op is back */
	struct iovec iov[2];	/* REGISTER's: header, payload */
	struct fent *next_wait;
};

/* One worker's FUSE frontend. */
struct fusew {
	struct bsteer_fe *fe;
	struct bsteer_server *s;
	struct bsteer_engine *e;
	struct bsteer_instance *in;
	const struct fuse_conf *conf;
	struct fuse_shared *sh;
	__u32 ring;
	__u32 nent;
	struct fent *ent;
	struct fent **by_req;	/* per request index of the engine */
	struct fent *wait_head, *wait_tail;
	__u32 busy;		/* entries holding a request */
	bool stopping;
	/* /dev/fuse (worker 0): FORGET, INTERRUPT, and the dev transport */
	unsigned char *devbuf;	/* a request read */
	unsigned char *devout;	/* a reply's arguments, answered here */
	bool dev_armed;
	bool dev_held;		/* devbuf holds a request no entry was free for */
	__u32 dev_len;
};

static inline __u64 fuse_ud_dev(const struct fusew *w)
{
	return bsteer_owner_ud(w->fe->owner, 1);
}

static inline void fuse_count(struct fusew *w, int which, __u64 v)
{
	bsteer_fe_count(w->fe, which, v);
}

/* The export a node is, or NULL. */
static inline struct bsteer_export *fuse_export(struct bsteer_server *s,
						__u64 node)
{
	return node >= FUSE_NODE(0) && node < (__u64)FUSE_NODE(s->nexports) ?
	       &s->exports[node - FUSE_NODE(0)] : NULL;
}

/*
 * fuse_answer.c: answer request @opcode on @node from header @in (its
 * first argument) and @arg (the rest: a name), writing the reply's
 * arguments to @out. The reply's length, or -errno.
 */
int fuse_answer(struct bsteer_server *s, const struct fuse_shared *sh,
		__u32 opcode, __u64 node, const void *in, const void *arg,
		__u32 arglen, void *out, __u32 outmax);

/* fuse_mount.c: the main thread's hooks */
int fuse_check(struct bsteer_fe *fe);
int fuse_setup(struct bsteer_fe *fe);
void fuse_ready(struct bsteer_fe *fe);
void fuse_quiesce(struct bsteer_fe *fe);
void fuse_teardown(struct bsteer_fe *fe);

#endif /* BSTEER_FRONTEND_FUSE_PRIV_H */
